// NIfTI-1 labels of a cine, as the app answers them (POST /infer/vessel_seg?output=image) and as
// it accepts them (PUT /datastore/label): frames of rows x columns, read with the conventions of
// angiokit.data.readers.read_nifti (an array whose first axis runs along world x is columns first).

const TYPES = {
  2: Uint8Array, 4: Int16Array, 8: Int32Array, 16: Float32Array, 64: Float64Array,
  256: Int8Array, 512: Uint16Array, 768: Uint32Array,
};

async function gunzipIfNeeded(buffer) {
  const bytes = new Uint8Array(buffer);
  if (bytes[0] !== 0x1f || bytes[1] !== 0x8b) return buffer;
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
  return new Response(stream).arrayBuffer();
}

/** {frames, rows, columns, data: [Uint8Array per frame]} of a NIfTI (.nii or .nii.gz) label. */
export async function readLabel(buffer) {
  const raw = await gunzipIfNeeded(buffer);
  let view = new DataView(raw);
  let little = true;
  if (view.getInt32(0, true) !== 348) {
    if (view.getInt32(0, false) !== 348) throw new Error('not a NIfTI-1 file (header size is not 348)');
    little = false;
  }
  const i16 = (o) => view.getInt16(o, little);
  const f32 = (o) => view.getFloat32(o, little);
  const ndim = i16(40);
  const dim = [1, 2, 3, 4].map((k) => (k <= ndim ? Math.max(1, i16(40 + 2 * k)) : 1));
  const datatype = i16(70);
  const Type = TYPES[datatype];
  if (!Type) throw new Error(`NIfTI data type ${datatype} is not supported`);
  const offset = Math.max(352, Math.round(f32(108)));
  const slope = f32(112) || 1;
  const inter = f32(116) || 0;
  // the direction of the first array axis in world coordinates
  let axis0;
  if (i16(254) > 0) {
    axis0 = [f32(280), f32(296), f32(312)];
  } else if (i16(252) > 0) {
    const b = f32(256), c = f32(260), d = f32(264);
    const a = Math.sqrt(Math.max(0, 1 - b * b - c * c - d * d));
    axis0 = [a * a + b * b - c * c - d * d, 2 * (b * c + a * d), 2 * (b * d - a * c)];
  } else {
    axis0 = [1, 0, 0]; // nibabel's base affine: x first
  }
  const columnsFirst = Math.abs(axis0[0]) > Math.abs(axis0[1]);
  let frames;
  if (ndim === 2 || (ndim === 3 && dim[2] === 1)) frames = 1;
  else if (ndim === 4 && dim[2] === 1) frames = dim[3];
  else if (ndim === 3) frames = dim[2];
  else throw new Error(`unexpected NIfTI shape ${dim.slice(0, ndim)}`);
  const [d0, d1] = dim;
  const rows = columnsFirst ? d1 : d0;
  const columns = columnsFirst ? d0 : d1;
  const count = d0 * d1 * frames;
  let values;
  if (little || Type.BYTES_PER_ELEMENT === 1) {
    values = new Type(raw.slice(offset, offset + count * Type.BYTES_PER_ELEMENT));
  } else {
    view = new DataView(raw, offset);
    values = new Float64Array(count);
    const get = { 4: 'getInt16', 8: 'getInt32', 16: 'getFloat32', 64: 'getFloat64', 512: 'getUint16', 768: 'getUint32' }[datatype];
    for (let i = 0; i < count; i++) values[i] = view[get](i * Type.BYTES_PER_ELEMENT, false);
  }
  const data = [];
  for (let t = 0; t < frames; t++) {
    const frame = new Uint8Array(rows * columns);
    const base = t * d0 * d1;
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < columns; c++) {
        const v = values[base + (columnsFirst ? c + columns * r : r + rows * c)] * slope + inter;
        frame[r * columns + c] = v > 0.5 ? Math.min(255, Math.round(v)) : 0;
      }
    }
    data.push(frame);
  }
  return { frames, rows, columns, data };
}

/** An uncompressed NIfTI-1 (.nii) of uint8 frames (each rows x columns, row by row): array
 * axes (columns, rows, frames), the first along world x, as ITK and 3D Slicer write a cine. */
export function writeLabel(frames, rows, columns) {
  const n = rows * columns;
  const buffer = new ArrayBuffer(352 + n * frames.length);
  const view = new DataView(buffer);
  view.setInt32(0, 348, true);
  const dims = [3, columns, rows, frames.length, 1, 1, 1, 1];
  dims.forEach((v, k) => view.setInt16(40 + 2 * k, v, true));
  view.setInt16(70, 2, true); // uint8
  view.setInt16(72, 8, true);
  [1, 1, 1, 1, 1, 1, 1, 1].forEach((v, k) => view.setFloat32(76 + 4 * k, v, true));
  view.setFloat32(108, 352, true);
  view.setFloat32(112, 1, true);
  view.setUint8(123, 2 | 8); // mm, seconds
  view.setInt16(252, 0, true);
  view.setInt16(254, 1, true); // sform: scanner
  const srow = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]];
  srow.forEach((row, i) => row.forEach((v, k) => view.setFloat32(280 + 16 * i + 4 * k, v, true)));
  [0x6e, 0x2b, 0x31, 0].forEach((v, k) => view.setUint8(344 + k, v)); // "n+1\0"
  const out = new Uint8Array(buffer, 352);
  frames.forEach((frame, t) => {
    for (let i = 0; i < n; i++) out[t * n + i] = frame[i] > 0 ? frame[i] : 0;
  });
  return new Blob([buffer], { type: 'application/octet-stream' });
}
