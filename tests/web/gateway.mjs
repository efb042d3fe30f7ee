// Starts the real gateway (the Release build made by setup) on a loopback port over a library of
// real photos, as `./imagesearch serve` does, and stops it again. Nothing is faked: the real model,
// the real index, the real watcher.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const photos = path.join(repo, 'test-data', 'photos');
export const variants = path.join(repo, 'test-data', 'variants');

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * Polls until check() returns a truthy value and returns it. The deadline only bounds a broken run;
 * no outcome depends on how fast anything is.
 */
export async function waitFor(check, what, { timeoutMs = 180_000, intervalMs = 200, gateway } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  for (;;) {
    if (gateway?.exited) throw new Error(`The gateway exited while waiting for ${what}:\n${gateway.log()}`);
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`Gave up waiting for ${what}${lastError ? ` (last error: ${lastError.message})` : ''}` +
        (gateway ? `\nGateway log:\n${gateway.log()}` : ''));
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export class Gateway {
  static async start({ library, settings = [] }) {
    const dll = path.join(repo, 'services/ImageSearch.Gateway/bin/Release/net10.0/ImageSearch.Gateway.dll');
    if (!existsSync(dll)) throw new Error(`${dll} is missing: build first (./imagesearch setup).`);
    const root = mkdtempSync(path.join(tmpdir(), 'web-test-'));
    const port = await freePort();
    const g = new Gateway();
    g.root = root;
    g.url = `http://127.0.0.1:${port}/`;
    g.lines = [];
    g.exited = false;
    g.process = spawn('dotnet', [dll, '--urls', `http://127.0.0.1:${port}`, `--Library:Root=${library}`,
      `--Index:Directory=${path.join(root, 'db')}`, `--Embedding:ModelsDirectory=${path.join(repo, 'models')}`,
      '--Library:SettleTime=00:00:00.2', ...settings], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
    for (const stream of [g.process.stdout, g.process.stderr]) {
      stream.setEncoding('utf8');
      stream.on('data', (chunk) => g.lines.push(...chunk.split('\n').filter(Boolean)));
    }
    g.process.on('exit', () => { g.exited = true; });
    await waitFor(async () => (await fetch(new URL('healthz', g.url))).ok, 'the gateway to answer /healthz', { gateway: g });
    return g;
  }

  log() {
    return this.lines.slice(-200).join('\n');
  }

  async status() {
    const response = await fetch(new URL('api/status', this.url));
    if (!response.ok) throw new Error(`status: HTTP ${response.status}`);
    return response.json();
  }

  async stop() {
    if (!this.exited) {
      const exited = new Promise((resolve) => this.process.once('exit', resolve));
      this.process.kill('SIGTERM');
      const timer = setTimeout(() => this.process.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(this.root, { recursive: true, force: true });
  }
}
