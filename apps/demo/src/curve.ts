/** The live learning curve: training loss per step as an SVG polyline with its axes' ranges. */
const W = 480;
const H = 220;
const PAD = { left: 44, right: 12, top: 12, bottom: 28 };
const NS = 'http://www.w3.org/2000/svg';

function el<K extends keyof SVGElementTagNameMap>(name: K, attrs: Record<string, string | number>, text?: string): SVGElementTagNameMap[K] {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Redraws `svg` with the points so far (step, loss). */
export function drawCurve(svg: SVGSVGElement, points: readonly { step: number; loss: number }[]): void {
  svg.replaceChildren();
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  const x0 = PAD.left;
  const x1 = W - PAD.right;
  const y0 = H - PAD.bottom;
  const y1 = PAD.top;
  svg.append(el('line', { x1: x0, y1: y0, x2: x1, y2: y0, class: 'axis' }), el('line', { x1: x0, y1: y0, x2: x0, y2: y1, class: 'axis' }));
  svg.append(el('text', { x: (x0 + x1) / 2, y: H - 6, 'text-anchor': 'middle', class: 'label' }, 'step'));
  if (points.length === 0) return;
  const maxStep = Math.max(2, ...points.map((p) => p.step));
  const losses = points.map((p) => p.loss);
  const lo = Math.min(...losses);
  const hi = Math.max(...losses);
  const span = hi - lo || 1;
  const sx = (s: number) => x0 + ((s - 1) / (maxStep - 1)) * (x1 - x0);
  const sy = (l: number) => y0 - ((l - lo) / span) * (y0 - y1);
  svg.append(
    el('text', { x: x0 - 4, y: y1 + 8, 'text-anchor': 'end', class: 'label' }, hi.toFixed(2)),
    el('text', { x: x0 - 4, y: y0, 'text-anchor': 'end', class: 'label' }, lo.toFixed(2)),
    el('text', { x: x1, y: H - 6, 'text-anchor': 'end', class: 'label' }, String(maxStep)),
  );
  svg.append(el('polyline', { points: points.map((p) => `${sx(p.step).toFixed(1)},${sy(p.loss).toFixed(1)}`).join(' '), class: 'loss' }));
  for (const p of points) svg.append(el('circle', { cx: sx(p.step).toFixed(1), cy: sy(p.loss).toFixed(1), r: 2.5, class: 'point', 'data-step': p.step, 'data-loss': p.loss }));
}
