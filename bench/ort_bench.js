// ONNX Runtime side of `make bench`, step 2 (step 1: bench/ort_export.py). Loads the three
// exported towers in onnxruntime-node (CPU), checks ORT's features against libclipn's and
// PyTorch's on the same inputs (it exits 1 before timing anything if they disagree), then
// times, each after a warm-up, best of ROUNDS:
//   image tower per image at batch 1 and 8;
//   the "yes" text tower per prompt at batch 64 x 77 tokens and batch 1 x 77 tokens
//   (ORT always runs all 77 positions);
// and prints resident memory after loading, after a batch of 8 and, with --batch32, after
// an image batch of 32.
//
//   node bench/ort_bench.js --ort MODULE_DIR --dir DIR [--threads N] [--rounds R]
//                           [--text-ids TEXT_IDS.i32] [--batch32]
// MODULE_DIR: node_modules/onnxruntime-node. DIR: ort_export.py's OUTDIR, also holding
// pixels.npy (clipn preprocess), ids.txt (clipn tokenize), c_image.npy, c_yes.npy,
// c_no.npy (clipn embed-image / embed-text [--no]). TEXT_IDS.i32: bench_text's prompts;
// ids.txt's first 64 rows must be its first 64 (the same token ids in both benches).
// The last line is "RESULT key=value ..." for bench/run.sh.
'use strict';
const fs = require('fs');
const path = require('path');

const FEATURE_TOL = 1e-4; // max |ort - ref| / max |ref| per vector, as tests/golden/parity.c
const COSINE_MIN = 0.9999;
const TEXT_BATCH = 64;
const TEXT_SINGLE = 8; // prompts timed one at a time

function parseArgs(argv) {
  const a = { threads: 2, rounds: 3, batch32: false };
  for (let i = 2; i < argv.length; i++) {
    const k = argv[i];
    if (k === '--batch32') a.batch32 = true;
    else if (['--ort', '--dir', '--threads', '--rounds', '--text-ids'].includes(k) && i + 1 < argv.length)
      a[k.slice(2).replace('-', '_')] = argv[++i];
    else throw new Error(`unknown or incomplete argument ${k}`);
  }
  if (!a.ort || !a.dir) throw new Error('--ort MODULE_DIR and --dir DIR are required');
  a.threads = parseInt(a.threads, 10);
  a.rounds = parseInt(a.rounds, 10);
  if (!(a.threads >= 1) || !(a.rounds >= 1)) throw new Error('--threads and --rounds must be >= 1');
  return a;
}

// .npy (format 1.x-3.x, C order, little-endian <f4 / <i4 / <i8) -> {shape, data}
function readNpy(file) {
  const buf = fs.readFileSync(file);
  if (buf.length < 10 || buf.toString('latin1', 0, 6) !== '\x93NUMPY')
    throw new Error(`${file}: not an .npy file`);
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', start, start + hlen);
  const descr = /'descr':\s*'([^']+)'/.exec(header);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!descr || !shape || /'fortran_order':\s*True/.test(header))
    throw new Error(`${file}: unsupported .npy header ${header}`);
  const dims = shape[1].split(',').map((s) => s.trim()).filter((s) => s).map(Number);
  const count = dims.reduce((p, d) => p * d, 1);
  const types = { '<f4': Float32Array, '<i4': Int32Array, '<i8': BigInt64Array };
  const T = types[descr[1]];
  if (!T) throw new Error(`${file}: dtype ${descr[1]} not supported`);
  const off = start + hlen;
  if (buf.length - off < count * T.BYTES_PER_ELEMENT) throw new Error(`${file}: truncated`);
  // copy: the Buffer's offset need not be aligned for the typed array
  const bytes = new Uint8Array(buf.buffer, buf.byteOffset + off, count * T.BYTES_PER_ELEMENT);
  return { shape: dims, data: new T(new Uint8Array(bytes).buffer) };
}

// clipn tokenize output: one prompt per line
function readIds(file) {
  const rows = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim())
    .map((l) => l.trim().split(/\s+/).map(Number));
  const C = rows[0].length;
  if (rows.some((r) => r.length !== C || r.some((v) => !Number.isInteger(v))))
    throw new Error(`${file}: rows of different lengths or non-integers`);
  return { n: rows.length, C, rows };
}

function statusMb(key) {
  const m = new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : -1;
}

function memoryLine(when) {
  const rss = statusMb('VmRSS');
  console.log(`memory ${when.padEnd(24)} VmRSS ${rss.toFixed(1)} MB (memoryUsage ` +
    `${(process.memoryUsage().rss / 1048576).toFixed(1)})  VmHWM ${statusMb('VmHWM').toFixed(1)} MB`);
  return rss;
}

// worst over vectors of max|a-b|/max|ref|, and the smallest cosine
function compare(a, ref, n, dim) {
  let worst = 0, minCos = 1;
  for (let v = 0; v < n; v++) {
    let diff = 0, scale = 0, ab = 0, aa = 0, bb = 0;
    for (let i = v * dim; i < (v + 1) * dim; i++) {
      diff = Math.max(diff, Math.abs(a[i] - ref[i]));
      scale = Math.max(scale, Math.abs(ref[i]));
      ab += a[i] * ref[i]; aa += a[i] * a[i]; bb += ref[i] * ref[i];
    }
    const e = diff / scale, c = ab / Math.sqrt(aa * bb);
    worst = Number.isNaN(e) || e > worst ? e : worst;
    minCos = Number.isNaN(c) || c < minCos ? c : minCos;
  }
  return { worst, minCos };
}

async function main() {
  const a = parseArgs(process.argv);
  const ort = require(path.resolve(a.ort));
  const version = require(path.join(path.resolve(a.ort), 'package.json')).version;
  const file = (name) => path.join(a.dir, name);

  const pixels = readNpy(file('pixels.npy'));
  const [N, ch, S, S2] = pixels.shape;
  const ids = readIds(file('ids.txt'));
  const C = ids.C;
  if (N < 8 || ids.n < TEXT_BATCH) throw new Error('need at least 8 images and 64 prompts');
  const idsAll = new BigInt64Array(ids.n * C);
  ids.rows.forEach((r, i) => r.forEach((v, j) => { idsAll[i * C + j] = BigInt(v); }));
  if (a.text_ids) { // the same token ids as bench_text (C's text bench)
    const raw = fs.readFileSync(a.text_ids);
    const c = new Int32Array(new Uint8Array(raw).buffer, 0, Math.floor(raw.length / 4));
    let same = c.length >= TEXT_BATCH * C;
    for (let i = 0; same && i < TEXT_BATCH * C; i++) same = BigInt(c[i]) === idsAll[i];
    if (!same) throw new Error(`${a.text_ids}: first ${TEXT_BATCH} prompts differ from ids.txt`);
    console.log(`text ids: the first ${TEXT_BATCH} prompts are bench_text's (identical ids)`);
  }

  const opts = { intraOpNumThreads: a.threads, interOpNumThreads: 1, graphOptimizationLevel: 'all',
                 executionMode: 'sequential', executionProviders: ['cpu'] };
  const rss0 = memoryLine('before load');
  let t0 = performance.now();
  const sessions = {};
  for (const name of ['image', 'text_yes', 'text_no'])
    if (fs.existsSync(file(`${name}.onnx`)))
      sessions[name] = await ort.InferenceSession.create(file(`${name}.onnx`), opts);
  const loadS = (performance.now() - t0) / 1e3;
  console.log(`onnxruntime-node ${version} (CPU), intra-op threads ${a.threads}, inter-op 1, ` +
    `graph optimization 'all'; ${Object.keys(sessions).join(', ')} loaded in ${loadS.toFixed(1)} s`);
  const rssLoad = memoryLine('after load');

  const image = async (n) => {
    const t = new ort.Tensor('float32', pixels.data.subarray(0, n * ch * S * S2), [n, ch, S, S2]);
    return (await sessions.image.run({ pixels: t })).image_features;
  };
  const text = async (tower, from, n) => {
    const t = new ort.Tensor('int64', idsAll.subarray(from * C, (from + n) * C), [n, C]);
    return (await sessions[tower].run({ ids: t })).text_features;
  };

  // Outputs first: ORT against C and against torch on the same pixels and token ids.
  let ok = true;
  const check = (what, out, n, refName, optional) => {
    if (optional && !fs.existsSync(file(refName))) return undefined; // torch's: if exported with them
    const ref = readNpy(file(refName));
    const dim = ref.shape[1];
    if (ref.shape[0] !== n || out.dims[1] !== dim) throw new Error(`${refName}: shape mismatch`);
    const r = compare(out.data, ref.data, n, dim);
    const good = r.worst <= FEATURE_TOL && r.minCos >= COSINE_MIN;
    ok = ok && good;
    console.log(`  ${what.padEnd(34)} max rel diff ${r.worst.toExponential(2)}  min cosine ` +
      `${r.minCos.toFixed(9)}  ${good ? 'ok' : 'MISMATCH'}`);
    return r;
  };
  console.log(`check: ORT features vs ${N} images, ${ids.n} prompts ` +
    `(limits: rel ${FEATURE_TOL}, cos ${COSINE_MIN})`);
  const imgOut = await image(N);
  const rImg = check('image vs C', imgOut, N, 'c_image.npy');
  check('image vs PyTorch', imgOut, N, 'torch_image.npy', true);
  let rTxt = { worst: 0 };
  for (const tower of ['yes', 'no']) {
    if (!sessions[`text_${tower}`]) continue;
    const out = await text(`text_${tower}`, 0, ids.n);
    const r = check(`text ${tower} tower vs C`, out, ids.n, `c_${tower}.npy`);
    if (r.worst > rTxt.worst) rTxt = r;
    check(`text ${tower} tower vs PyTorch`, out, ids.n, `torch_${tower}.npy`, true);
  }
  if (!ok) {
    console.error('ort_bench: ONNX Runtime features disagree with the references: no timings');
    process.exit(1);
  }

  const best = async (fn) => { // seconds, best of rounds, after one warm-up call
    await fn();
    let b = Infinity;
    for (let r = 0; r < a.rounds; r++) {
      t0 = performance.now();
      await fn();
      b = Math.min(b, (performance.now() - t0) / 1e3);
    }
    return b;
  };
  const b1 = await best(() => image(1));
  const b8 = (await best(() => image(8))) / 8;
  const rss8 = memoryLine('after a batch of 8');
  const hwm8 = statusMb('VmHWM');
  const t64 = (await best(() => text('text_yes', 0, TEXT_BATCH))) / TEXT_BATCH;
  const t1 = (await best(async () => {
    for (let i = 0; i < TEXT_SINGLE; i++) await text('text_yes', i, 1);
  })) / TEXT_SINGLE;
  let rss32 = -1;
  if (a.batch32) {
    const per = ch * S * S2, big = new Float32Array(32 * per); // the photos, repeated
    for (let i = 0; i < 32; i += N) big.set(pixels.data.subarray(0, Math.min(N, 32 - i) * per), i * per);
    await sessions.image.run({ pixels: new ort.Tensor('float32', big, [32, ch, S, S2]) });
    rss32 = memoryLine('after a batch of 32');
  }
  console.log(`best of ${a.rounds}, ${a.threads} threads: image batch 1 ${(b1 * 1e3).toFixed(1)} ms, ` +
    `batch 8 ${(b8 * 1e3).toFixed(1)} ms/image | text (yes tower, ${C} positions) batch ` +
    `${TEXT_BATCH} ${(t64 * 1e3).toFixed(2)} ms/prompt, batch 1 ${(t1 * 1e3).toFixed(2)} ms/prompt`);
  console.log(`RESULT threads=${a.threads} b1_ms=${(b1 * 1e3).toFixed(2)} b8_ms=${(b8 * 1e3).toFixed(2)} ` +
    `txt64_ms=${(t64 * 1e3).toFixed(3)} txt1_ms=${(t1 * 1e3).toFixed(3)} ` +
    `rss_base_mb=${rss0.toFixed(1)} rss_load_mb=${rssLoad.toFixed(1)} rss_mb=${rss8.toFixed(1)} ` +
    `hwm_mb=${hwm8.toFixed(1)} rss32_mb=${rss32.toFixed(1)} ` +
    `img_rel=${rImg.worst.toExponential(2)} txt_rel=${rTxt.worst.toExponential(2)}`);
}

main().catch((e) => {
  console.error(`ort_bench: ${e.message}`);
  process.exit(1);
});
