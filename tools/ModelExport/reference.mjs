// Reference embeddings from the ORIGINAL nsfwjs TF.js models, for checking the ONNX exports of
// tools/ModelExport/export.py. Runs TF.js's pure-JS CPU backend (no native code, no network) on
// two synthetic images per model and writes tests/fixtures/model-reference/<name>.json.
//
//   node tools/ModelExport/reference.mjs --nsfwjs node_modules/nsfwjs \
//        --out tests/fixtures/model-reference [--model inception-v3-mixed7|mobilenet-v2-1.4|all]
//
// The model files are read from disk directly: model.min.js / group1-shard*.min.js are UMD
// modules exporting the model.json object and base64 weight slices, which require() returns.
import { createRequire } from "node:module";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import * as tf from "@tensorflow/tfjs";

const FORMULA =
  "pixel(s, y, x, c) = (x * (3 + c) + y * (5 + 2 * s) + 40 * c + 97 * s) % 256 " +
  "for image s in {0, 1}, row y, column x, channel c (0=R, 1=G, 2=B); " +
  "fed to TF.js as NHWC float32 divided by 255 exactly as nsfwjs does (img.toFloat().div(255))";
const SEEDS = [0, 1];
const SIGNIFICANT_DIGITS = 6;

const MOBILENET_PREFIX =
  "StatefulPartitionedCall/sequential/keras_layer/StatefulPartitionedCall/" +
  "StatefulPartitionedCall/StatefulPartitionedCall/predict/";

// Must describe the same cut points as MODELS in export.py.
const MODELS = {
  "inception-v3-mixed7": {
    path: "dist/models/inception_v3",
    size: 299,
    dims: 768,
    // Keras layers model: sub-model ending at mixed7 ([N,17,17,768]), then mean over H and W.
    async embed(artifacts, images) {
      const model = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
      const cut = tf.model({ inputs: model.inputs, outputs: model.getLayer("mixed7").output });
      return tf.tidy(() => cut.predict(images).mean([1, 2]));
    },
  },
  "mobilenet-v2-1.4": {
    path: "dist/models/mobilenet_v2_mid",
    size: 224,
    dims: 1792,
    // TF-Hub graph model: execute up to the pooled feature vector in front of the 5-class head.
    async embed(artifacts, images) {
      const model = await tf.loadGraphModel(tf.io.fromMemory(artifacts));
      return model.execute(images, MOBILENET_PREFIX + "feature_vector/SpatialSqueeze");
    },
  },
};

function loadArtifacts(modelDir) {
  const require = createRequire(path.resolve(modelDir, "model.min.js"));
  const modelJson = require("./model.min.js");
  const weightSpecs = [];
  const buffers = [];
  for (const group of modelJson.weightsManifest) {
    for (const shard of group.paths) {
      const base64 = require(`./${shard}.min.js`);
      if (typeof base64 !== "string") throw new Error(`${shard}.min.js did not export a base64 string`);
      buffers.push(Buffer.from(base64, "base64"));
    }
    weightSpecs.push(...group.weights);
  }
  const weightData = Buffer.concat(buffers);
  return {
    modelTopology: modelJson.modelTopology,
    format: modelJson.format,
    generatedBy: modelJson.generatedBy,
    convertedBy: modelJson.convertedBy,
    weightSpecs,
    // A standalone copy: Buffer.concat may return a view into a larger pooled ArrayBuffer.
    weightData: weightData.buffer.slice(weightData.byteOffset, weightData.byteOffset + weightData.byteLength),
  };
}

function syntheticImages(size) {
  const pixels = new Float32Array(SEEDS.length * size * size * 3);
  let i = 0;
  for (const s of SEEDS)
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++)
        for (let c = 0; c < 3; c++) pixels[i++] = (x * (3 + c) + y * (5 + 2 * s) + 40 * c + 97 * s) % 256;
  const raw = tf.tensor4d(pixels, [SEEDS.length, size, size, 3], "float32");
  return tf.tidy(() => raw.toFloat().div(tf.scalar(255))); // nsfwjs NSFWJS.infer preprocessing
}

// One vector per line keeps the fixture readable and diffable.
function formatFixture(fixture) {
  const { outputs, ...head } = fixture;
  const body = JSON.stringify(head, null, 2).replace(/\n}$/, "");
  const vectors = outputs.map((v) => "    " + JSON.stringify(v)).join(",\n");
  return `${body},\n  "outputs": [\n${vectors}\n  ]\n}\n`;
}

async function main() {
  const { values: args } = parseArgs({
    options: {
      nsfwjs: { type: "string", default: "node_modules/nsfwjs" },
      out: { type: "string", default: "tests/fixtures/model-reference" },
      model: { type: "string", default: "all" },
    },
  });
  const names = args.model === "all" ? Object.keys(MODELS) : [args.model];
  for (const name of names) if (!MODELS[name]) throw new Error(`unknown model ${name}`);

  await tf.setBackend("cpu");
  mkdirSync(args.out, { recursive: true });
  for (const name of names) {
    const spec = MODELS[name];
    const started = Date.now();
    const images = syntheticImages(spec.size);
    const embeddings = await spec.embed(loadArtifacts(path.join(args.nsfwjs, spec.path)), images);
    if (embeddings.shape.join() !== [SEEDS.length, spec.dims].join())
      throw new Error(`${name}: reference output has shape [${embeddings.shape}], expected [${SEEDS.length},${spec.dims}]`);
    const outputs = (await embeddings.array()).map((v) => v.map((f) => Number(f.toPrecision(SIGNIFICANT_DIGITS))));
    const fixture = {
      model: name,
      command: `node tools/ModelExport/reference.mjs --nsfwjs node_modules/nsfwjs --out tests/fixtures/model-reference --model ${name}`,
      tfjs: tf.version.tfjs,
      formula: FORMULA,
      inputs: SEEDS.map((seed) => ({ seed })),
      outputs,
    };
    const file = path.join(args.out, `${name}.json`);
    writeFileSync(file, formatFixture(fixture));
    tf.dispose([images, embeddings]);
    console.log(`${name}: wrote ${file} in ${((Date.now() - started) / 1000).toFixed(1)}s`);
  }
}

await main();
