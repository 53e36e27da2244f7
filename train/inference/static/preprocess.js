// A drawing or photo of one character -> the network's input, exactly as `etlkit predict` makes
// it (train/inference/images.py `load_gray` and `to_input`, with etlkit.preprocess's
// area-averaging and Otsu threshold and Pillow's reduce and BOX resize, ported operation by
// operation: float32 where NumPy computes in float32, round-half-even where it rounds so).
// Used by the exported page (`etlkit export --format web`); tests run it under Node against the
// Python code. Images are {data: Uint8Array, h, w}, row-major gray.
(function (root) {
  "use strict";
  const SIZE = 64;  // etlkit.preprocess.SIZE
  const INK = 128;  // a pixel at or above half the full ink counts as ink
  const WORK_SIDE = 1024;  // larger images are box-reduced to this first
  const f32 = Math.fround;

  function rint(x) {  // NumPy's rint: halves to even
    const r = Math.round(x);
    return (r - x === 0.5 && r % 2 !== 0) ? r - 1 : r;
  }

  // opaque RGBA pixels (canvas ImageData; the page draws everything over white) as Pillow's
  // convert("L"): ITU-R 601-2 luma in its fixed point
  function grayOf(rgba, w, h) {
    const data = new Uint8Array(w * h);
    for (let i = 0; i < w * h; i++) {
      data[i] = (rgba[4 * i] * 19595 + rgba[4 * i + 1] * 38470 + rgba[4 * i + 2] * 7471 +
                 0x8000) >>> 16;
    }
    return {data, h, w};
  }

  // Pillow's Image.reduce(f): f x f box means, partial boxes at the right and bottom edges,
  // in its fixed point ((sum + n/2) * floor(2^32 / (256 n))) >> 24
  function reduce(im, f) {
    const oh = Math.ceil(im.h / f), ow = Math.ceil(im.w / f);
    const data = new Uint8Array(oh * ow);
    for (let y = 0; y < oh; y++) {
      const y1 = Math.min(im.h, (y + 1) * f);
      for (let x = 0; x < ow; x++) {
        const x1 = Math.min(im.w, (x + 1) * f);
        let sum = 0;
        for (let yy = y * f; yy < y1; yy++) {
          for (let xx = x * f; xx < x1; xx++) sum += im.data[yy * im.w + xx];
        }
        const n = (y1 - y * f) * (x1 - x * f);
        const multiplier = Math.floor(4294967296 / (256 * n));
        data[y * ow + x] = Math.floor(((sum + Math.floor(n / 2)) * multiplier) / 16777216);
      }
    }
    return {data, h: oh, w: ow};
  }

  // load_gray's last step: images larger than WORK_SIDE reduced to it
  function workSize(im) {
    const f = Math.ceil(Math.max(im.h, im.w) / WORK_SIDE);
    return f > 1 ? reduce(im, f) : im;
  }

  function median(data) {
    const counts = new Float64Array(256);
    for (let i = 0; i < data.length; i++) counts[data[i]]++;
    const kth = k => { let seen = 0; for (let v = 0; v < 256; v++) { seen += counts[v]; if (seen > k) return v; } return 255; };
    const n = data.length;
    return n % 2 ? kth((n - 1) / 2) : (kth(n / 2 - 1) + kth(n / 2)) / 2;
  }

  // images.ink_high: paper 0, the darkest ink 255; throws when there is no ink
  function inkHigh(im) {
    let paper = median(im.data), lo = 255, hi = 0;
    for (let i = 0; i < im.data.length; i++) { lo = Math.min(lo, im.data[i]); hi = Math.max(hi, im.data[i]); }
    const flip = paper > (lo + hi) / 2;
    if (flip) paper = 255 - paper;
    const ink = new Float32Array(im.data.length);
    let top = 0;
    for (let i = 0; i < ink.length; i++) { ink[i] = flip ? 255 - im.data[i] : im.data[i]; top = Math.max(top, ink[i]); }
    if (top - paper < 32) throw new Error("no ink found (the image is one flat colour)");
    const p = f32(paper), scale = f32(255 / (top - paper));
    const data = new Uint8Array(ink.length);
    for (let i = 0; i < ink.length; i++) {
      data[i] = rint(Math.min(255, Math.max(0, f32(f32(ink[i] - p) * scale))));
    }
    return {data, h: im.h, w: im.w};
  }

  // etlkit.preprocess.block_sums + finish (no Otsu) for a square image of side <= 256
  function areaAverage(im) {
    const side = im.w;
    if (side === SIZE) return im;
    const data = new Uint8Array(SIZE * SIZE);
    if (side % SIZE === 0) {
      const f = side / SIZE, top = 255 * f * f;
      for (let y = 0; y < SIZE; y++) {
        for (let x = 0; x < SIZE; x++) {
          let sum = 0;
          for (let i = 0; i < f; i++) for (let j = 0; j < f; j++) sum += im.data[(y * f + i) * side + x * f + j];
          data[y * SIZE + x] = Math.floor(sum * 255 / top + 0.5);
        }
      }
      return {data, h: SIZE, w: SIZE};
    }
    const scale = side / SIZE;  // float32 overlap weights (64, side), as _area_weights
    const weights = new Float32Array(SIZE * side);
    for (let i = 0; i < SIZE; i++) {
      const a = i * scale, b = (i + 1) * scale;
      for (let j = 0; j < side; j++) {
        weights[i * side + j] = Math.max(0, Math.min(b, j + 1) - Math.max(a, j)) / scale;
      }
    }
    const rows = new Float32Array(SIZE * side);  // weights @ image
    for (let i = 0; i < SIZE; i++) {
      for (let x = 0; x < side; x++) {
        let s = 0;
        for (let j = 0; j < side; j++) s += weights[i * side + j] * im.data[j * side + x];
        rows[i * side + x] = s;
      }
    }
    for (let i = 0; i < SIZE; i++) {  // (weights @ image) @ weights.T
      for (let k = 0; k < SIZE; k++) {
        let s = 0;
        for (let x = 0; x < side; x++) s += rows[i * side + x] * weights[k * side + x];
        data[i * SIZE + k] = Math.floor(f32(f32(s) + 0.5));
      }
    }
    return {data, h: SIZE, w: SIZE};
  }

  // scipy.ndimage.center_of_mass + the whole-pixel shift of to_input
  function shiftToMass(im, massAt) {
    let total = 0, rows = 0, cols = 0;
    for (let y = 0; y < im.h; y++) {
      for (let x = 0; x < im.w; x++) { const v = im.data[y * im.w + x]; total += v; rows += v * y; cols += v * x; }
    }
    const dy = rint(massAt[0] * SIZE - (rows / total + 0.5));
    const dx = rint(massAt[1] * SIZE - (cols / total + 0.5));
    const data = new Uint8Array(im.data.length);
    for (let y = 0; y < im.h; y++) {
      const sy = y - dy;
      if (sy < 0 || sy >= im.h) continue;
      for (let x = 0; x < im.w; x++) {
        const sx = x - dx;
        if (sx >= 0 && sx < im.w) data[y * im.w + x] = im.data[sy * im.w + sx];
      }
    }
    return {data, h: im.h, w: im.w};
  }

  // Pillow's resize(..., BOX) for 8-bit images: coefficients normalized to 22-bit fixed point,
  // a horizontal then a vertical pass
  const PRECISION_BITS = 22;
  function coefficients(inSize, outSize) {
    const scale = inSize / outSize, filterscale = Math.max(scale, 1);
    const support = 0.5 * filterscale, ksize = Math.ceil(support) * 2 + 1;
    const bounds = [], kk = [];
    for (let xx = 0; xx < outSize; xx++) {
      const center = (xx + 0.5) * scale, ss = 1 / filterscale;
      const xmin = Math.max(0, Math.trunc(center - support + 0.5));
      const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
      const k = new Float64Array(ksize);
      let ww = 0;
      for (let x = 0; x < xmax; x++) {
        const t = (x + xmin - center + 0.5) * ss;
        k[x] = (t > -0.5 && t <= 0.5) ? 1 : 0;
        ww += k[x];
      }
      const fixed = new Int32Array(ksize);
      for (let x = 0; x < ksize; x++) {
        const v = ww !== 0 && x < xmax ? k[x] / ww : k[x];
        fixed[x] = v < 0 ? Math.trunc(-0.5 + v * (1 << PRECISION_BITS)) : Math.trunc(0.5 + v * (1 << PRECISION_BITS));
      }
      bounds.push([xmin, xmax]);
      kk.push(fixed);
    }
    return {bounds, kk};
  }
  function clip8(v) {
    if (v >= (1 << PRECISION_BITS) * 256) return 255;
    if (v <= 0) return 0;
    return Math.floor(v / (1 << PRECISION_BITS));
  }
  function resizeBox(im, size) {
    const c = coefficients(im.w, size);
    const yFirst = c.bounds[0][0];
    const yLast = c.bounds[size - 1][0] + c.bounds[size - 1][1];
    const tempH = yLast - yFirst;
    const temp = new Uint8Array(tempH * size);
    for (let y = 0; y < tempH; y++) {
      for (let x = 0; x < size; x++) {
        const [xmin, xmax] = c.bounds[x], k = c.kk[x];
        let s = 1 << (PRECISION_BITS - 1);
        for (let i = 0; i < xmax; i++) s += im.data[(y + yFirst) * im.w + xmin + i] * k[i];
        temp[y * size + x] = clip8(s);
      }
    }
    const data = new Uint8Array(size * size);
    for (let y = 0; y < size; y++) {
      const [ymin, ymax] = c.bounds[y], k = c.kk[y];
      for (let x = 0; x < size; x++) {
        let s = 1 << (PRECISION_BITS - 1);
        for (let i = 0; i < ymax; i++) s += temp[(ymin - yFirst + i) * size + x] * k[i];
        data[y * size + x] = clip8(s);
      }
    }
    return {data, h: size, w: size};
  }

  // etlkit.preprocess.binarize: above scikit-image's Otsu threshold -> 255, else 0
  function otsu(im) {
    const counts = new Float64Array(256);
    for (let i = 0; i < im.data.length; i++) counts[im.data[i]]++;
    let lo = 0, hi = 255;
    while (counts[lo] === 0) lo++;
    while (counts[hi] === 0) hi--;
    let t = lo;
    if (lo !== hi) {
      const w1 = new Float64Array(256), m1 = new Float64Array(256);
      const w2 = new Float64Array(256), m2 = new Float64Array(256);
      let c = 0, s = 0;
      for (let v = 0; v < 256; v++) { c += counts[v]; s += counts[v] * v; w1[v] = c; m1[v] = s / c; }
      c = 0; s = 0;
      for (let v = 255; v >= 0; v--) { c += counts[v]; s += counts[v] * v; w2[v] = c; m2[v] = s / c; }
      let best = -Infinity;
      for (let v = lo; v < hi; v++) {
        const d = m1[v] - m2[v + 1];
        const variance = w1[v] * w2[v + 1] * (d * d);
        if (variance > best) { best = variance; t = v; }
      }
    }
    return {data: im.data.map(v => (v > t ? 255 : 0)), h: im.h, w: im.w};
  }

  // images.to_input: gray (h, w) -> the (size, size) uint8 network input
  function toInput(gray, frame) {
    const ink = inkHigh(gray);
    let top = ink.h, bottom = -1, left = ink.w, right = -1;
    for (let y = 0; y < ink.h; y++) {
      for (let x = 0; x < ink.w; x++) {
        if (ink.data[y * ink.w + x] >= INK) {
          top = Math.min(top, y); bottom = Math.max(bottom, y);
          left = Math.min(left, x); right = Math.max(right, x);
        }
      }
    }
    const ch = bottom - top + 1, cw = right - left + 1;
    const side = Math.ceil(Math.max(ch, cw) / frame.fill);
    let canvas = {data: new Uint8Array(side * side), h: side, w: side};
    const oy = Math.floor((side - ch) / 2), ox = Math.floor((side - cw) / 2);
    for (let y = 0; y < ch; y++) {
      for (let x = 0; x < cw; x++) canvas.data[(oy + y) * side + ox + x] = ink.data[(top + y) * ink.w + left + x];
    }
    const factor = Math.ceil(side / 256);
    if (factor > 1) canvas = reduce(canvas, factor);
    let image = areaAverage(canvas);
    if (frame.mass_at) image = shiftToMass(image, frame.mass_at);
    if (frame.size !== SIZE) image = resizeBox(image, frame.size);
    return frame.otsu ? otsu(image) : image;
  }

  const api = {grayOf, workSize, reduce, toInput};
  if (typeof module !== "undefined" && module.exports) module.exports = api;
  else root.EtlPreprocess = api;
})(this);
