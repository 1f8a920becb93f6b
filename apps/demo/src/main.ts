import * as tf from '@tensorflow/tfjs-core';
import { FASHION_MNIST_CLASSES, getModelCard, listModels, type ExplainMethod, type FloatImage } from '@vit/core';
import { DEMO_BACKENDS, availability, switchBackend, type DemoBackend } from './backend.js';
import { drawCurve } from './curve.js';
import { drawExplanation } from './explanation.js';
import { loadSubset, type Subset } from './data.js';
import { loadNano, loadWithWeights, modelChoices, predict, preprocess, rgbaToFloat, type LoadedModel } from './models.js';
import { trainNano, type StepPoint } from './train.js';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const backendSelect = $<HTMLSelectElement>('backend');
const backendStatus = $('backend-status');
const modelSelect = $<HTMLSelectElement>('model');
const loadButton = $<HTMLButtonElement>('load-pretrained');
const weightsFile = $<HTMLInputElement>('weights-file');
const modelStatus = $('model-status');
const input = $<HTMLCanvasElement>('input');
const inputLabel = $('input-label');
const invert = $<HTMLInputElement>('invert');
const samples = $('samples');
const top5 = $<HTMLOListElement>('top5');
const explainCanvas = $<HTMLCanvasElement>('explain');
const explainMethod = $<HTMLSelectElement>('explain-method');
const explainStatus = $('explain-status');
const trainModel = $<HTMLSelectElement>('train-model');
const trainStart = $<HTMLButtonElement>('train-start');
const trainStop = $<HTMLButtonElement>('train-stop');
const trainUse = $<HTMLButtonElement>('train-use');
const curve = document.getElementById('curve') as unknown as SVGSVGElement;
const trainStats = $('train-stats');
const trainStatus = $('train-status');

function setStatus(el: HTMLElement, state: string, text: string): void {
  el.dataset.state = state;
  el.textContent = text;
}
const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

const state: {
  subset?: Subset;
  loaded?: LoadedModel;
  /** The image as given (sample, drawing or file), before the model's preprocessing. */
  image?: FloatImage;
  /** Its class, for a bundled sample. */
  label?: number;
  trained?: LoadedModel;
  training?: AbortController;
  /** The class to explain (a click on the top 5); undefined: the top class. */
  explainClass?: number;
} = {};

// ---- backend -------------------------------------------------------------------------------

async function useBackend(name: DemoBackend): Promise<void> {
  backendSelect.disabled = true;
  setStatus(backendStatus, 'switching', `starting ${name}…`);
  try {
    const r = await switchBackend(name);
    setStatus(backendStatus, 'ready', `${r.backend}: ${r.detail}`);
    backendStatus.title = r.warnings.join('\n');
  } catch (e) {
    setStatus(backendStatus, 'error', `${name} failed: ${message(e)}`);
  } finally {
    backendSelect.disabled = state.training !== undefined;
    backendSelect.value = tf.getBackend();
  }
}

async function setUpBackends(): Promise<void> {
  for (const name of DEMO_BACKENDS) {
    const why = await availability(name);
    const opt = new Option(why ? `${name} (unavailable)` : name, name);
    opt.disabled = why !== undefined;
    opt.title = why ?? '';
    backendSelect.append(opt);
  }
  backendSelect.addEventListener('change', async () => {
    await useBackend(backendSelect.value as DemoBackend);
    if (state.loaded && state.image) await runPrediction();
  });
  await useBackend('wasm');
}

// ---- models --------------------------------------------------------------------------------

function setUpModels(): void {
  for (const { name, pretrained } of modelChoices()) {
    modelSelect.append(new Option(pretrained ? `${name} (Fashion-MNIST weights)` : name, name));
  }
  for (const name of listModels('*_nano')) trainModel.append(new Option(name, name));
  const syncButton = () => {
    const card = getModelCard(modelSelect.value);
    loadButton.disabled = !(card.pretrained ?? []).some((t) => !t.unavailable && t.sources.length > 0);
  };
  modelSelect.addEventListener('change', syncButton);
  syncButton();
  loadButton.addEventListener('click', () => useModel(() => loadNano(modelSelect.value)));
  weightsFile.addEventListener('change', () => {
    const file = weightsFile.files?.[0];
    if (file) void useModel(() => loadWithWeights(modelSelect.value, file));
  });
}

async function useModel(load: () => Promise<LoadedModel>): Promise<void> {
  setStatus(modelStatus, 'loading', 'loading…');
  try {
    const m = await load();
    if (state.loaded && state.loaded !== state.trained) state.loaded.model.dispose();
    state.loaded = m;
    state.explainClass = undefined;
    const notes = m.notes.length ? ` (${m.notes.join('; ')})` : '';
    setStatus(modelStatus, 'ready', `${m.name} from ${m.source}${notes}`);
    if (state.image) await runPrediction();
  } catch (e) {
    setStatus(modelStatus, 'error', message(e));
  }
}

// ---- the image -----------------------------------------------------------------------------

const ctx = input.getContext('2d', { willReadFrequently: true })!;

function clearInput(): void {
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, input.width, input.height);
}

/** Shows `img` ([0, 1], 1 or 3 channels) on `canvas`, scaled to fill it. */
function paint(canvas: HTMLCanvasElement, img: FloatImage): void {
  const tmp = document.createElement('canvas');
  tmp.width = img.width;
  tmp.height = img.height;
  const t = tmp.getContext('2d')!;
  const out = t.createImageData(img.width, img.height);
  for (let p = 0; p < img.width * img.height; p++) {
    for (let c = 0; c < 3; c++) out.data[p * 4 + c] = Math.round(255 * img.data[p * img.channels + (img.channels === 1 ? 0 : c)]!);
    out.data[p * 4 + 3] = 255;
  }
  t.putImageData(out, 0, 0);
  const g = canvas.getContext('2d')!;
  g.imageSmoothingEnabled = false;
  g.drawImage(tmp, 0, 0, canvas.width, canvas.height);
}

async function setImage(image: FloatImage, label?: number): Promise<void> {
  state.image = image;
  state.label = label;
  state.explainClass = undefined;
  inputLabel.textContent = label === undefined ? '' : `True class: ${FASHION_MNIST_CLASSES[label]}`;
  inputLabel.dataset.label = label === undefined ? '' : String(label);
  if (state.loaded) await runPrediction();
}

function setUpDrawing(): void {
  clearInput();
  let drawing = false;
  const at = (e: PointerEvent) => {
    const r = input.getBoundingClientRect();
    return [((e.clientX - r.left) * input.width) / r.width, ((e.clientY - r.top) * input.height) / r.height] as const;
  };
  input.addEventListener('pointerdown', (e) => {
    drawing = true;
    input.setPointerCapture(e.pointerId);
    // A drawing replaces a sample or a file: start from black.
    if (state.label !== undefined || input.dataset.source !== 'drawing') clearInput();
    input.dataset.source = 'drawing';
    samples.querySelectorAll('.selected').forEach((b) => b.classList.remove('selected'));
    const [x, y] = at(e);
    ctx.beginPath();
    ctx.moveTo(x, y);
  });
  input.addEventListener('pointermove', (e) => {
    if (!drawing) return;
    const [x, y] = at(e);
    ctx.strokeStyle = '#fff';
    ctx.lineWidth = 16;
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    ctx.lineTo(x, y);
    ctx.stroke();
  });
  input.addEventListener('pointerup', () => {
    if (!drawing) return;
    drawing = false;
    void setImage(rgbaToFloat(ctx.getImageData(0, 0, input.width, input.height)));
  });
  $('clear').addEventListener('click', () => {
    clearInput();
    input.dataset.source = 'drawing';
    state.image = undefined;
    top5.replaceChildren();
    top5.dataset.state = 'none';
    explainCanvas.getContext('2d')!.clearRect(0, 0, explainCanvas.width, explainCanvas.height);
    setStatus(explainStatus, 'none', '');
    inputLabel.textContent = '';
  });

  const openFile = async (file: File) => {
    const bitmap = await createImageBitmap(file);
    clearInput();
    // Letterboxed into the square canvas, which is what the model is shown.
    const s = Math.min(input.width / bitmap.width, input.height / bitmap.height);
    const w = bitmap.width * s;
    const h = bitmap.height * s;
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(bitmap, (input.width - w) / 2, (input.height - h) / 2, w, h);
    bitmap.close();
    input.dataset.source = 'file';
    await setImage(rgbaToFloat(ctx.getImageData(0, 0, input.width, input.height)));
  };
  $<HTMLInputElement>('image-file').addEventListener('change', (e) => {
    const file = (e.target as HTMLInputElement).files?.[0];
    if (file) void openFile(file);
  });
  input.addEventListener('dragover', (e) => {
    e.preventDefault();
    input.classList.add('dragging');
  });
  input.addEventListener('dragleave', () => input.classList.remove('dragging'));
  input.addEventListener('drop', (e) => {
    e.preventDefault();
    input.classList.remove('dragging');
    const file = e.dataTransfer?.files[0];
    if (file) void openFile(file);
  });
  explainMethod.addEventListener('change', () => {
    state.explainClass = undefined;
    if (state.loaded && state.image) void runPrediction();
  });
  invert.addEventListener('change', () => {
    if (state.loaded && state.image) void runPrediction();
  });
}

/** Two test images of every class, as buttons. */
function setUpSamples(subset: Subset): void {
  const perClass = new Map<number, number[]>();
  for (let i = 0; i < subset.test.length; i++) {
    const l = subset.test.labelOf(i);
    const list = perClass.get(l) ?? [];
    if (list.length < 2) perClass.set(l, [...list, i]);
  }
  const [h, w] = subset.test.imageShape;
  for (const round of [0, 1]) {
    for (let c = 0; c < FASHION_MNIST_CLASSES.length; c++) {
      const i = perClass.get(c)?.[round];
      if (i === undefined) continue;
      const { image } = subset.test.get(i);
      const img: FloatImage = { data: Float32Array.from(image, (v) => v / 255), height: h, width: w, channels: 1 };
      const b = document.createElement('button');
      b.title = `test image ${i}: ${FASHION_MNIST_CLASSES[c]}`;
      b.dataset.index = String(i);
      b.dataset.label = String(c);
      const cv = document.createElement('canvas');
      cv.width = w;
      cv.height = h;
      paint(cv, img);
      b.append(cv);
      b.addEventListener('click', () => {
        samples.querySelectorAll('.selected').forEach((x) => x.classList.remove('selected'));
        b.classList.add('selected');
        input.dataset.source = 'sample';
        paint(input, img);
        void setImage(img, c);
      });
      samples.append(b);
    }
  }
}

// ---- prediction ----------------------------------------------------------------------------

let predicting: Promise<void> = Promise.resolve();

/** Predicts the current image; calls queue so results arrive in order. */
function runPrediction(): Promise<void> {
  predicting = predicting.then(async () => {
    const m = state.loaded;
    const image = state.image;
    if (!m || !image) return;
    top5.dataset.state = 'running';
    try {
      const { x, view } = preprocess(m, image, { invert: invert.checked });
      try {
        const best = await predict(m, x);
        top5.replaceChildren(
          ...best.map((e) => {
            const li = document.createElement('li');
            li.dataset.index = String(e.index);
            li.title = `explain ${e.label} (Grad-CAM)`;
            li.addEventListener('click', () => {
              state.explainClass = e.index;
              void runPrediction();
            });
            if (e.index === state.label) li.classList.add('true');
            if (e.index === state.explainClass) li.classList.add('explained');
            const name = document.createElement('span');
            name.className = 'name';
            name.textContent = e.label;
            const prob = document.createElement('span');
            prob.className = 'prob';
            prob.textContent = ` ${(100 * e.probability).toFixed(1)}%`;
            const bar = document.createElement('span');
            bar.className = 'bar';
            bar.style.width = `${Math.max(1, 200 * e.probability)}px`;
            li.append(name, prob, bar);
            return li;
          }),
        );
        top5.dataset.state = 'ready';
        await runExplanation(m, x, view);
      } finally {
        x.dispose();
      }
    } catch (e) {
      top5.dataset.state = 'error';
      top5.textContent = message(e);
    }
  });
  return predicting;
}

async function runExplanation(m: LoadedModel, x: Parameters<typeof drawExplanation>[2], view: FloatImage): Promise<void> {
  setStatus(explainStatus, 'running', 'explaining…');
  try {
    // A chosen class needs Grad-CAM (rollout cannot target a class).
    const method = (state.explainClass !== undefined ? 'gradcam' : explainMethod.value) as ExplainMethod;
    const r = await drawExplanation(explainCanvas, m, x, view, { method, classIndex: state.explainClass });
    const name = m.classNames?.[r.classIndex] ?? String(r.classIndex);
    const how = r.method === 'rollout' ? 'attention rollout' : `Grad-CAM on ${r.layer}`;
    setStatus(explainStatus, 'ready', `${how}, for ${name}${state.explainClass === undefined ? ' (the top class)' : ''}`);
    explainStatus.dataset.method = r.method;
    explainStatus.dataset.classIndex = String(r.classIndex);
  } catch (e) {
    explainCanvas.getContext('2d')!.clearRect(0, 0, explainCanvas.width, explainCanvas.height);
    setStatus(explainStatus, 'error', message(e));
  }
}

// ---- training ------------------------------------------------------------------------------

function setUpTraining(): void {
  drawCurve(curve, []);
  trainStart.addEventListener('click', async () => {
    const subset = state.subset;
    if (!subset || state.training) return;
    const ac = new AbortController();
    state.training = ac;
    trainStart.disabled = true;
    trainStop.disabled = false;
    trainUse.disabled = true;
    backendSelect.disabled = true;
    const settings = {
      model: trainModel.value,
      steps: Number($<HTMLInputElement>('train-steps').value),
      batchSize: Number($<HTMLInputElement>('train-batch').value),
      lr: Number($<HTMLInputElement>('train-lr').value),
    };
    const points: StepPoint[] = [];
    const backend = tf.getBackend();
    setStatus(trainStatus, 'running', `training ${settings.model} on ${backend}: ${subset.train.length} images, batch ${settings.batchSize}…`);
    drawCurve(curve, points);
    try {
      const r = await trainNano(subset, settings, {
        signal: ac.signal,
        onStep: (p) => {
          points.push(p);
          drawCurve(curve, points);
          // The first step includes warm-up (kernel compilation, first allocations).
          const steady = points.length > 1 ? points.slice(1) : points;
          const mean = steady.reduce((a, q) => a + q.imagesPerSecond, 0) / steady.length;
          trainStats.dataset.imagesPerSecond = mean.toFixed(2);
          trainStats.textContent = `step ${p.step}: loss ${p.loss.toFixed(3)} · ${p.imagesPerSecond.toFixed(1)} img/s (mean after step 1: ${mean.toFixed(1)} img/s on ${backend})`;
        },
      });
      if (state.trained && state.trained !== state.loaded) state.trained.model.dispose();
      const card = getModelCard(settings.model);
      state.trained = {
        name: settings.model,
        model: r.model,
        classNames: FASHION_MNIST_CLASSES,
        input: { size: [card.inputSize[0], card.inputSize[1]], mean: card.mean, std: card.std, cropPct: card.cropPct, interpolation: card.interpolation },
        grey: true,
        source: `${r.points.length} steps of training in this page`,
        notes: [],
      };
      trainUse.disabled = false;
      setStatus(
        trainStatus,
        'done',
        `${r.status === 'interrupted' ? 'stopped' : 'done'} after ${r.points.length} steps on ${backend}; test top-1 ${(100 * r.test.top1).toFixed(1)}% on ${r.test.numExamples} images (loss ${r.test.loss.toFixed(3)})`,
      );
    } catch (e) {
      setStatus(trainStatus, 'error', `training failed: ${message(e)}`);
    } finally {
      state.training = undefined;
      trainStart.disabled = false;
      trainStop.disabled = true;
      backendSelect.disabled = false;
    }
  });
  trainStop.addEventListener('click', () => state.training?.abort());
  trainUse.addEventListener('click', () => {
    const t = state.trained;
    if (t) void useModel(async () => t);
  });
}

// ---- start ---------------------------------------------------------------------------------

async function start(): Promise<void> {
  await setUpBackends();
  setUpModels();
  setUpDrawing();
  setUpTraining();
  state.subset = await loadSubset();
  setUpSamples(state.subset);
  document.body.dataset.ready = '1';
}

start().catch((e) => {
  document.body.dataset.ready = 'error';
  setStatus(backendStatus, 'error', message(e));
});
