// The XA annotation page: a study list, a cine in a Cornerstone3D stack viewport with its vessel
// label as a stack labelmap (one labelmap image per frame), brush and eraser, and the app's
// endpoints for inference, saving, training, active learning and quality ratings. Every request
// goes to the server that serves this page (URLs relative to it).
import {
  init as coreInit, RenderingEngine, Enums as CoreEnums, imageLoader, eventTarget, cache,
} from '@cornerstonejs/core';
import { init as dicomImageLoaderInit } from '@cornerstonejs/dicom-image-loader';
import {
  init as toolsInit, addTool, ToolGroupManager, BrushTool, StackScrollTool, Enums as ToolEnums,
  segmentation, utilities as toolUtils,
} from '@cornerstonejs/tools';
import { readLabel, writeLabel } from './nifti.js';

const PAGE = new URL('.', window.location.href); // .../xa/
const ROOT = new URL('..', PAGE); // the app: the server that serves this page
const url = (path) => new URL(path, ROOT).href;
const ENGINE_ID = 'xa-engine';
const VIEWPORT_ID = 'xa-viewport';
const TOOLGROUP_ID = 'xa-tools';
const ERASER = 'Eraser';
const $ = (id) => document.getElementById(id);

const state = {
  study: null, // the open study's id
  info: null, // its /xa/api/study answer
  imageIds: [],
  segmentationId: null,
  labelImageIds: [],
  playing: false,
  lastLabel: null, // the last label the server answered: {frames, rows, columns, data}
  quality: null, // the last /infer/quality answer
  generation: 0,
  models: {},
};

// ---- messages ------------------------------------------------------------------------------
function say(text, error = false) {
  const el = $('status');
  el.textContent = text;
  el.classList.toggle('error', error);
  el.dataset.state = error ? 'error' : 'ok';
  if (error) console.warn(text); // a refused request is the server's answer, shown to the annotator
}

async function request(path, options = {}) {
  const r = await fetch(url(path), options);
  if (!r.ok) {
    let detail = await r.text();
    try { detail = JSON.parse(detail).detail ?? detail; } catch { /* not JSON */ }
    throw new Error(`${options.method || 'GET'} /${path.split('?')[0]}: HTTP ${r.status}: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`);
  }
  return r;
}

async function busy(what, fn) {
  const buttons = [...document.querySelectorAll('button')];
  const before = buttons.map((b) => b.disabled);
  buttons.forEach((b) => { b.disabled = true; });
  say(`${what}...`);
  document.body.dataset.busy = '1';
  try {
    const result = await fn();
    return result;
  } catch (e) {
    say(e.message, true);
    return undefined;
  } finally {
    buttons.forEach((b, i) => { b.disabled = before[i]; });
    delete document.body.dataset.busy;
    updateButtons();
  }
}

function updateButtons() {
  const open = !!state.study && state.imageIds.length > 0;
  $('run-seg').disabled = !open || !state.models.vessel_seg;
  $('save').disabled = !open || !state.segmentationId;
  $('run-quality').disabled = !open || !state.models.quality;
  $('save-rating').disabled = !open;
  $('confirm-scores').disabled = !open || !state.quality;
  $('train').disabled = !$('train-model').value;
  $('next').disabled = !$('strategy').value;
}

// ---- the server: models, strategies, studies -------------------------------------------------
async function loadInfo() {
  const info = await (await request('info/')).json();
  state.models = info.models || {};
  $('server').textContent = `${info.name || 'MONAI Label'} ${info.version || ''} at ${ROOT.host}`;
  $('strategy').innerHTML = Object.keys(info.strategies || {}).map((s) => `<option>${s}</option>`).join('');
  $('train-model').innerHTML = Object.keys(info.trainers || {}).map((s) => `<option>${s}</option>`).join('');
  $('run-seg').hidden = !state.models.vessel_seg;
  $('run-quality').hidden = !state.models.quality;
}

async function loadStudies() {
  const all = await (await request('datastore/?output=all')).json();
  const objects = all.objects || {};
  const rows = Object.entries(objects).map(([id, o]) => {
    const info = (o.image && o.image.info) || {};
    const labels = o.labels || {};
    return { id, info, labelled: !!labels.final, rated: !!labels.quality };
  });
  rows.sort((a, b) => a.id.localeCompare(b.id));
  const body = $('studies').querySelector('tbody');
  body.innerHTML = '';
  for (const row of rows) {
    const tr = document.createElement('tr');
    tr.dataset.study = row.id;
    const frames = row.info.NumberOfFrames || row.info.frames || '-';
    const name = row.info.SOPInstanceUID ? `run ${row.info.InstanceNumber ?? ''} ${row.id}` : row.id;
    tr.innerHTML = `<td class="id" title="${row.id}"></td><td>${frames}</td><td>${row.labelled ? 'saved' : ''}</td><td>${row.rated ? 'rated' : ''}</td>`;
    tr.firstChild.textContent = name;
    if (row.info.readable === false) tr.title = `not readable: ${row.info.unreadable || ''}`;
    tr.classList.toggle('selected', row.id === state.study);
    tr.addEventListener('click', () => openStudy(row.id));
    body.appendChild(tr);
  }
  document.body.dataset.studies = String(rows.length);
  return rows;
}

// ---- Cornerstone3D ---------------------------------------------------------------------------
let engine;
let viewport;
let toolGroup;

async function initCornerstone() {
  await coreInit();
  dicomImageLoaderInit({ maxWebWorkers: 1, wasmBasePath: new URL('codecs/', PAGE).href });
  toolsInit();
  addTool(StackScrollTool);
  addTool(BrushTool);
  engine = new RenderingEngine(ENGINE_ID);
  engine.enableElement({ viewportId: VIEWPORT_ID, type: CoreEnums.ViewportType.STACK, element: $('viewport') });
  viewport = engine.getViewport(VIEWPORT_ID);
  toolGroup = ToolGroupManager.createToolGroup(TOOLGROUP_ID);
  toolGroup.addTool(StackScrollTool.toolName);
  toolGroup.addTool(BrushTool.toolName, { activeStrategy: 'FILL_INSIDE_CIRCLE' });
  toolGroup.addToolInstance(ERASER, BrushTool.toolName, { activeStrategy: 'ERASE_INSIDE_CIRCLE' });
  toolGroup.addViewport(VIEWPORT_ID, ENGINE_ID);
  setTool('scroll');
  $('viewport').addEventListener(CoreEnums.Events.STACK_NEW_IMAGE, showFrame);
  eventTarget.addEventListener(CoreEnums.Events.IMAGE_LOAD_ERROR, (e) => say(`image not loaded: ${e.detail?.error?.message || e.detail?.error || ''}`, true));
}

function setTool(name) {
  const primary = [{ mouseButton: ToolEnums.MouseBindings.Primary }];
  for (const tool of [StackScrollTool.toolName, BrushTool.toolName, ERASER]) toolGroup.setToolPassive(tool);
  toolGroup.setToolActive(StackScrollTool.toolName, { bindings: [{ mouseButton: ToolEnums.MouseBindings.Wheel }] });
  if (name === 'brush') toolGroup.setToolActive(BrushTool.toolName, { bindings: primary });
  if (name === 'eraser') toolGroup.setToolActive(ERASER, { bindings: primary });
  if (name === 'scroll') toolGroup.setToolActive(StackScrollTool.toolName, { bindings: [...primary, { mouseButton: ToolEnums.MouseBindings.Wheel }] });
  document.querySelectorAll('input[name=tool]').forEach((el) => { el.checked = el.value === name; });
  document.body.dataset.tool = name;
}

function showFrame() {
  const k = viewport.getCurrentImageIdIndex();
  $('frame').value = String(k + 1);
  $('frame-label').textContent = `frame ${k + 1} / ${state.imageIds.length}`;
  document.body.dataset.frame = String(k);
}

function stopCine() {
  if (state.playing) toolUtils.cine.stopClip($('viewport'));
  state.playing = false;
  $('play').textContent = 'Play';
}

function removeSegmentation() {
  if (!state.segmentationId) return;
  segmentation.removeSegmentationRepresentations(VIEWPORT_ID, { segmentationId: state.segmentationId });
  segmentation.removeSegmentation(state.segmentationId);
  state.labelImageIds.forEach((id) => cache.removeImageLoadObject(id));
  state.segmentationId = null;
  state.labelImageIds = [];
}

async function openStudy(id) {
  const generation = ++state.generation;
  stopCine();
  return busy(`opening ${id}`, async () => {
    const info = await (await request(`xa/api/study?image=${encodeURIComponent(id)}`)).json();
    if (generation !== state.generation) return;
    removeSegmentation();
    state.study = id;
    state.info = info;
    state.quality = null;
    state.lastLabel = null;
    showScores(null);
    const dicom = new URL(`api/dicom?image=${encodeURIComponent(id)}`, PAGE).href;
    state.imageIds = Array.from({ length: info.frames }, (_, k) => `wadouri:${dicom}&frame=${k + 1}`);
    await imageLoader.loadAndCacheImage(state.imageIds[0]); // the file, fetched once: the other frames are read from it
    await Promise.all(state.imageIds.slice(1).map((imageId) => imageLoader.loadAndCacheImage(imageId)));
    await viewport.setStack(state.imageIds, 0);
    viewport.render();
    $('frame').max = String(info.frames);
    showFrame();
    $('title').title = id;
    $('title').textContent = `${id} - ${info.frames} frames, ${info.rows} x ${info.columns}${info.series ? `, series ${info.series}` : ''}`;
    document.querySelectorAll('#studies tbody tr').forEach((tr) => tr.classList.toggle('selected', tr.dataset.study === id));
    await createSegmentation();
    if (info.label) { // a saved label: shown, to correct
      const label = await readLabel(await (await request(`xa/api/label?image=${encodeURIComponent(id)}`)).arrayBuffer());
      setLabel(label);
    }
    if (info.rating) fillRating(info.rating);
    document.body.dataset.open = id;
    say(`${id}: ${info.frames} frames${info.label ? ', saved label shown' : ''}`);
  });
}

async function createSegmentation() {
  const segmentationId = `label-${state.study}-${state.generation}`;
  const labelImages = imageLoader.createAndCacheDerivedLabelmapImages(state.imageIds);
  state.labelImageIds = labelImages.map((image) => image.imageId);
  segmentation.addSegmentations([{
    segmentationId,
    representation: { type: ToolEnums.SegmentationRepresentations.Labelmap, data: { imageIds: state.labelImageIds } },
    config: { label: 'vessel', segments: { 1: { label: 'vessel', active: true } } },
  }]);
  await segmentation.addLabelmapRepresentationToViewportMap({ [VIEWPORT_ID]: [{ segmentationId }] });
  segmentation.activeSegmentation.setActiveSegmentation(VIEWPORT_ID, segmentationId);
  segmentation.segmentIndex.setActiveSegmentIndex(segmentationId, 1);
  state.segmentationId = segmentationId;
  toolUtils.segmentation.setBrushSizeForToolGroup(TOOLGROUP_ID, Number($('brush-size').value));
}

function labelImage(k) {
  return cache.getImage(state.labelImageIds[k]);
}

/** The labelmap of frame k, a copy (rows x columns, row by row). */
function labelFrame(k) {
  const image = labelImage(k);
  return Uint8Array.from(image.voxelManager.getScalarData());
}

function setLabel(label) {
  const { rows, columns } = state.info;
  if (label.frames !== state.imageIds.length || label.rows !== rows || label.columns !== columns) {
    throw new Error(`the label is ${label.frames} x ${label.rows} x ${label.columns} (frames, rows, columns), the cine ${state.imageIds.length} x ${rows} x ${columns}`);
  }
  label.data.forEach((frame, k) => {
    const scalars = labelImage(k).voxelManager.getScalarData();
    scalars.set(frame.map((v) => (v > 0 ? 1 : 0)));
  });
  segmentation.triggerSegmentationEvents.triggerSegmentationDataModified(state.segmentationId);
  viewport.render();
}

// ---- actions ---------------------------------------------------------------------------------
async function runSegmentation() {
  await busy('running vessel_seg', async () => {
    const form = new FormData();
    form.append('params', JSON.stringify({}));
    const r = await request(`infer/vessel_seg?image=${encodeURIComponent(state.study)}&output=image`, { method: 'POST', body: form });
    const label = await readLabel(await r.arrayBuffer());
    state.lastLabel = label;
    setLabel(label);
    const vessel = label.data.reduce((s, f) => s + f.reduce((a, v) => a + (v > 0), 0), 0);
    document.body.dataset.segmented = state.study;
    say(`vessel_seg: ${label.frames} frames labelled (${vessel} vessel pixels); correct them with brush and eraser, then Save`);
  });
}

async function saveLabel() {
  await busy('saving the label', async () => {
    const { rows, columns } = state.info;
    const frames = state.labelImageIds.map((_, k) => labelFrame(k));
    const form = new FormData();
    form.append('label', writeLabel(frames, rows, columns), 'label.nii');
    form.append('params', JSON.stringify({ annotator: 'xa page' }));
    const r = await request(`datastore/label?image=${encodeURIComponent(state.study)}&tag=final`, { method: 'PUT', body: form });
    const answer = await r.json().catch(() => ({}));
    document.body.dataset.saved = state.study;
    say(`label of ${state.study} saved${answer.label ? ` (${answer.label})` : ''}`);
    await loadStudies();
  });
}

async function train() {
  const model = $('train-model').value;
  await busy(`starting training of ${model}`, async () => {
    const epochs = Number($('epochs').value);
    const body = JSON.stringify(epochs > 0 ? { max_epochs: epochs } : {});
    const r = await request(`train/${model}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
    const task = await r.json();
    say(`training of ${model} started${task.id ? ` (${task.id})` : ''}`);
    document.body.dataset.training = task.status || 'SUBMITTED';
    pollTraining(task.id);
  });
}

const TASK_ENDED = ['DONE', 'ERROR', 'STOPPED'];

async function pollTraining(taskId) {
  // GET /train/ answers the latest training task: SUBMITTED, RUNNING, then DONE / ERROR / STOPPED
  let task = null;
  try {
    task = await (await request('train/')).json();
  } catch (e) {
    $('train-status').textContent = e.message;
  }
  const ours = task && (!taskId || task.id === taskId);
  if (ours) {
    const last = task.details && task.details.length ? ` - ${task.details[task.details.length - 1]}` : '';
    $('train-status').textContent = `${task.name || 'training'}: ${task.status}${last}`;
    document.body.dataset.training = task.status || '';
  }
  if (!ours || !TASK_ENDED.includes(task.status)) setTimeout(() => pollTraining(taskId), 2000);
}

async function nextSample() {
  const strategy = $('strategy').value;
  const id = await busy(`asking ${strategy} for the next sample`, async () => {
    const r = await request(`activelearning/${strategy}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
    const answer = await r.json();
    if (!answer.id) throw new Error(`${strategy}: no study left to annotate`);
    return answer.id;
  });
  if (id) await openStudy(id);
}

// ---- quality ---------------------------------------------------------------------------------
const METRICS = ['guidewire', 'branch', 'artifact'];

function showScores(answer) {
  for (const m of METRICS) {
    const score = answer && answer.scores ? answer.scores[m] : undefined;
    $(`score-${m}`).textContent = score === undefined ? '-' : Number(score).toFixed(2);
  }
  if (!answer) $('rating').reset();
}

function fillRating(rating) {
  for (const m of METRICS) if (rating[m] !== undefined) $('rating').elements[m].value = String(rating[m]);
  if (rating.comment) $('rating').elements.comment.value = rating.comment;
}

async function runQuality() {
  await busy('running quality', async () => {
    const form = new FormData();
    form.append('params', JSON.stringify({}));
    const r = await request(`infer/quality?image=${encodeURIComponent(state.study)}&output=json`, { method: 'POST', body: form });
    state.quality = await r.json();
    showScores(state.quality);
    document.body.dataset.scored = state.study;
    say('quality: the model\'s scores are beside the image; confirm or correct them, then Save rating');
  });
}

function takeModelScores() {
  if (!state.quality) return;
  const rating = {};
  for (const m of METRICS) rating[m] = Math.min(5, Math.max(1, Math.round(state.quality.scores[m] * 2) / 2));
  fillRating(rating);
}

async function saveRating(event) {
  event.preventDefault();
  const form = $('rating');
  if (!form.reportValidity()) return;
  const rating = {};
  for (const m of METRICS) rating[m] = Number(form.elements[m].value);
  if (form.elements.comment.value) rating.comment = form.elements.comment.value;
  if (state.quality) rating.model_scores = state.quality.scores;
  await busy('saving the rating', async () => {
    const body = new FormData();
    body.append('label', new Blob([JSON.stringify(rating)], { type: 'application/json' }), 'rating.json');
    body.append('params', JSON.stringify({}));
    await request(`datastore/label?image=${encodeURIComponent(state.study)}&tag=quality`, { method: 'PUT', body });
    document.body.dataset.rated = state.study;
    say(`rating of ${state.study} saved`);
    await loadStudies();
  });
}

// ---- wiring ----------------------------------------------------------------------------------
function wire() {
  $('refresh').addEventListener('click', () => loadStudies().catch((e) => say(e.message, true)));
  $('run-seg').addEventListener('click', runSegmentation);
  $('save').addEventListener('click', saveLabel);
  $('train').addEventListener('click', train);
  $('next').addEventListener('click', nextSample);
  $('run-quality').addEventListener('click', runQuality);
  $('confirm-scores').addEventListener('click', takeModelScores);
  $('rating').addEventListener('submit', saveRating);
  document.querySelectorAll('input[name=tool]').forEach((el) => el.addEventListener('change', () => setTool(el.value)));
  $('brush-size').addEventListener('input', () => {
    $('brush-size-label').textContent = $('brush-size').value;
    toolUtils.segmentation.setBrushSizeForToolGroup(TOOLGROUP_ID, Number($('brush-size').value));
  });
  $('show-label').addEventListener('change', () => {
    if (!state.segmentationId) return;
    segmentation.config.visibility.setSegmentationRepresentationVisibility(
      VIEWPORT_ID, { segmentationId: state.segmentationId, type: ToolEnums.SegmentationRepresentations.Labelmap }, $('show-label').checked,
    );
  });
  $('frame').addEventListener('input', async () => {
    stopCine();
    await viewport.setImageIdIndex(Number($('frame').value) - 1);
  });
  $('play').addEventListener('click', () => {
    if (!state.imageIds.length) return;
    if (state.playing) { stopCine(); return; }
    toolUtils.cine.playClip($('viewport'), { framesPerSecond: Number($('fps').value) || 10, loop: true });
    state.playing = true;
    $('play').textContent = 'Stop';
  });
}

// what the browser test reads (and a console user may): the open cine and its labelmap
window.xa = {
  state,
  labelFrame: (k) => Array.from(labelFrame(k)),
  labelSum: (k) => labelFrame(k).reduce((s, v) => s + (v > 0), 0),
  frame: () => viewport.getCurrentImageIdIndex(),
  setFrame: (k) => viewport.setImageIdIndex(k),
};

async function main() {
  wire();
  try {
    await initCornerstone();
    await loadInfo();
    await loadStudies();
    updateButtons();
    say('choose a study, or Next sample');
    document.body.dataset.ready = '1';
  } catch (e) {
    say(`the page could not start: ${e.message}`, true);
    console.error(e);
  }
}

main();
