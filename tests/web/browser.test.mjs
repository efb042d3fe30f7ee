// The web page in a real browser: Debian's chromium (apt, installed by `./imagesearch setup --test`)
// driven by playwright-core, never a downloaded browser, against the real gateway on loopback with
// the real model and real photos. Upload a photo, wait until it is indexed, search with a box drawn
// with the mouse (and, on a phone-sized touch screen, with a finger), see the uploaded photo first,
// open it and find similar images.
//
// Every wait is on a condition (a state the page shows), with generous deadlines; nothing depends
// on timing. Screenshots go to .cache/test-results/web/ and, with SCREENSHOTS=docs/screenshots
// (relative to the repository), also there: that is how the README's pictures are made.
//
//   node --test tests/web/browser.test.mjs                               # what ./imagesearch test runs
//   SCREENSHOTS=docs/screenshots node --test tests/web/browser.test.mjs  # refresh the docs' screenshots

import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium } from 'playwright-core';
import { Gateway, photos, repo, variants, waitFor } from './gateway.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const UPLOADED = 'outdoors-school2';
const UPLOADED_PATH = `uploads/${UPLOADED}.jpg`;
const outputs = [path.join(repo, '.cache/test-results/web')];
if (process.env.SCREENSHOTS) outputs.push(path.resolve(repo, process.env.SCREENSHOTS));

let gateway;
let browser;
let page;
let library;
let libraryCount;

async function screenshot(name, options = {}, pg = page) {
  // Pictures for people: wait until the images in view have loaded.
  await pg.waitForFunction(() => [...document.images].every((img) => {
    const r = img.getBoundingClientRect();
    return img.complete || r.bottom < 0 || r.top > innerHeight || r.width === 0;
  }));
  const shot = await pg.screenshot({ animations: 'disabled', caret: 'hide', ...options });
  for (const dir of outputs) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, name), shot);
  }
}

/** The box on screen, from its accessible name ("Search region: W by H pixels at X, Y"). */
async function drawnBox(pg = page) {
  const label = await pg.getByRole('group', { name: /^Search region/ }).getAttribute('aria-label');
  const [w, h, x, y] = label.match(/\d+/g).map(Number);
  return { x, y, w, h };
}

const boxQuery = (b) => `image box=${b.x},${b.y},${b.w},${b.h}`;

/** Waits until the results list answers `query` (data-query) and no search is in flight; returns the hits' paths. */
async function resultsFor(query, pg = page) {
  await pg.waitForFunction((q) => {
    const list = document.getElementById('results');
    return list.dataset.query === q && !list.hasAttribute('aria-busy');
  }, query, { timeout: 120_000 });
  return pg.locator('#results .tile-name').evaluateAll((names) => names.map((n) => n.title));
}

/** Where image pixel (x, y) of the query image is on the screen. */
async function screenPoint(pg, x, y) {
  const image = pg.getByRole('img', { name: 'Query image' });
  const [nw, nh] = await image.evaluate((img) => [img.naturalWidth, img.naturalHeight]);
  const r = await image.boundingBox();
  return [r.x + (x / nw) * r.width, r.y + (y / nh) * r.height];
}

/** The box where the uploaded photo was pasted into its scene (x,y,w,h in the scene's pixels). */
function pastedBox() {
  const [x, y, w, h] = readFileSync(path.join(variants, `${UPLOADED}.in-scene.box`), 'utf8').trim().split(',').map(Number);
  return { x, y, w, h };
}

function assertNear(box, wanted) {
  for (const k of ['x', 'y', 'w', 'h']) {
    assert.ok(Math.abs(box[k] - wanted[k]) <= 3, `box drawn ${JSON.stringify(box)}, wanted ${JSON.stringify(wanted)}`);
  }
}

describe('web page in Debian chromium', { timeout: 15 * 60_000 }, () => {
  before(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`No browser at ${CHROMIUM}: ./imagesearch setup --test installs Debian's chromium (apt package chromium).`);
    }
    // Every photo but the one to upload: the scene it is pasted into is there, so only the box finds it.
    library = mkdtempSync(path.join(tmpdir(), 'web-library-'));
    const files = readdirSync(photos).filter((f) => f.endsWith('.jpg') && f !== `${UPLOADED}.jpg`);
    for (const f of files) copyFileSync(path.join(photos, f), path.join(library, f));
    libraryCount = files.length;
    gateway = await Gateway.start({ library });
    await waitFor(async () => (await gateway.status()).indexed === libraryCount, `${libraryCount} photos to be indexed`, { gateway });
    browser = await chromium.launch({ executablePath: CHROMIUM });
    page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    page.setDefaultTimeout(60_000);
    page.on('pageerror', (error) => console.error(`page error: ${error.message}`));
  });

  after(async () => {
    await browser?.close();
    await gateway?.stop();
    if (library) rmSync(library, { recursive: true, force: true });
  });

  it('serves the page with its security headers, and every control has a label', async () => {
    const response = await page.goto(gateway.url);
    assert.equal(response.status(), 200);
    const headers = response.headers();
    assert.match(headers['content-security-policy'], /default-src 'self'/);
    assert.equal(headers['x-content-type-options'], 'nosniff');
    await page.getByRole('status').filter({ hasText: `${libraryCount} images` }).waitFor();
    const unlabelled = await page.locator('input, select, button').evaluateAll((controls) => controls
      .filter((c) => !(c.labels?.length || c.getAttribute('aria-label') || c.textContent.trim()))
      .map((c) => c.outerHTML));
    assert.deepEqual(unlabelled, []);
  });

  it('uploads a photo and follows it until it is indexed; a file that is not an image is refused with the reason', async () => {
    await page.getByRole('tab', { name: 'Library' }).click();
    await page.getByRole('heading', { name: 'Add images' }).waitFor();
    await page.getByLabel('Choose images to add').setInputFiles([
      path.join(photos, `${UPLOADED}.jpg`),
      path.join(variants, 'broken-text.jpg'),
    ]);
    const uploads = page.getByRole('list', { name: 'Uploads' });
    await uploads.getByRole('listitem').filter({ hasText: 'broken-text.jpg' }).getByText('Unsupported image format').waitFor();
    await uploads.getByRole('listitem').filter({ hasText: `${UPLOADED}.jpg` }).getByText(`Indexed as ${UPLOADED_PATH}`)
      .waitFor({ timeout: 180_000 });
    // The library view lists it among the recently added images.
    await page.getByRole('list', { name: 'Recently added' }).getByRole('button', { name: UPLOADED_PATH }).waitFor();
    await page.getByRole('status').filter({ hasText: `${libraryCount + 1} images` }).waitFor();
    await screenshot('library.png');
  });

  it('finds the uploaded photo first when a box is drawn around it in a scene', async () => {
    await page.getByRole('tab', { name: 'Search' }).click();
    await page.getByLabel('Choose a query image').setInputFiles(path.join(variants, `${UPLOADED}.in-scene.jpg`));
    const whole = await resultsFor('image');
    assert.notEqual(whole[0], UPLOADED_PATH, 'the whole scene finds the scene, not the photo pasted into it');

    // Draw the box where the photo was pasted, with the mouse.
    const { x, y, w, h } = pastedBox();
    await page.mouse.move(...await screenPoint(page, x, y));
    await page.mouse.down();
    await page.mouse.move(...await screenPoint(page, x + w / 2, y + h / 2), { steps: 5 });
    await page.mouse.move(...await screenPoint(page, x + w, y + h), { steps: 5 });
    await page.mouse.up();

    const box = await drawnBox();
    assertNear(box, { x, y, w, h });
    const hits = await resultsFor(boxQuery(box));
    assert.equal(hits[0], UPLOADED_PATH, `first hit with the box: ${hits.join(', ')}`);
    await screenshot('search.png');
  });

  it('moves the box from the keyboard', async () => {
    await page.getByRole('group', { name: /^Search region/ }).focus();
    const start = await drawnBox();
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('Alt+ArrowDown');
    const moved = await drawnBox();
    assert.ok(moved.x > start.x && moved.y === start.y, `moved right: ${JSON.stringify(start)} -> ${JSON.stringify(moved)}`);
    assert.ok(moved.h > start.h && moved.w === start.w, `taller: ${JSON.stringify(start)} -> ${JSON.stringify(moved)}`);
    // The keys' search runs once they pause; the results then answer the moved box.
    await resultsFor(boxQuery(moved));
  });

  it('opens a result and finds images similar to it', async () => {
    await page.getByRole('list', { name: 'Results' }).getByRole('button', { name: new RegExp(`^${UPLOADED_PATH}, score`) }).click();
    const dialog = page.getByRole('dialog', { name: `${UPLOADED}.jpg` });
    await dialog.waitFor();
    await dialog.getByRole('link', { name: 'Open original' }).waitFor();
    assert.match(await dialog.getByRole('link', { name: 'Open original' }).getAttribute('href'), /^\/api\/images\/[0-9a-f]{32}$/);
    await page.waitForFunction(() => document.getElementById('viewer-image').complete);
    await screenshot('viewer.png');

    const id = (await dialog.getByRole('link', { name: 'Open original' }).getAttribute('href')).split('/').pop();
    await dialog.getByRole('button', { name: 'Find similar' }).click();
    await dialog.waitFor({ state: 'hidden' });
    const similar = await resultsFor(`similar ${id}`);
    assert.ok(similar.length > 0, 'similar images are listed');
    assert.ok(!similar.includes(UPLOADED_PATH), 'the image itself is left out');
    await page.getByRole('heading', { name: `Similar to ${UPLOADED}.jpg` }).waitFor();

    // And back to the image and its box.
    await page.getByRole('button', { name: 'Back to my query' }).click();
    await resultsFor(boxQuery(await drawnBox()));
  });

  it('draws the box with a finger on a phone-sized touch screen', async () => {
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true });
    try {
      const small = await phone.newPage();
      await small.goto(gateway.url);
      await small.getByLabel('Choose a query image').setInputFiles(path.join(variants, `${UPLOADED}.in-scene.jpg`));
      await resultsFor('image', small);

      // A finger drag: touch events through the DevTools protocol, which the page sees as Pointer Events.
      const wanted = pastedBox();
      const touch = await phone.newCDPSession(small);
      const at = async (px, py) => { const [tx, ty] = await screenPoint(small, px, py); return [{ x: tx, y: ty }]; };
      await touch.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: await at(wanted.x, wanted.y) });
      for (const f of [0.25, 0.5, 0.75, 1]) {
        await touch.send('Input.dispatchTouchEvent', { type: 'touchMove', touchPoints: await at(wanted.x + wanted.w * f, wanted.y + wanted.h * f) });
      }
      await touch.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });

      const box = await drawnBox(small);
      assertNear(box, wanted);
      const hits = await resultsFor(boxQuery(box), small);
      assert.equal(hits[0], UPLOADED_PATH, `first hit with the box drawn by touch: ${hits.join(', ')}`);
      const overflow = await small.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      assert.equal(overflow, 0, 'no sideways scrolling');
      await screenshot('phone.png', { fullPage: true }, small);
    } finally {
      await phone.close();
    }
  });
});
