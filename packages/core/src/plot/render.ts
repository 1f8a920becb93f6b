import { nodeApi } from '../data/node.js';
import { loadSharp, loadVega } from '../data/optional.js';
import { writeFileAtomic } from '../weights/io.js';

/** Where a chart was written. */
export interface PlotFiles {
  png: string;
  svg?: string;
}

/** Shared look of every chart: readable sizes on a white background. */
export const CHART_CONFIG = {
  font: 'DejaVu Sans, Helvetica, Arial, sans-serif',
  title: { fontSize: 18, subtitleFontSize: 13, subtitleColor: '#555', anchor: 'start', offset: 12 },
  axis: { labelFontSize: 12, titleFontSize: 13, titleFontWeight: 'normal', gridColor: '#e6e6e6', domainColor: '#888', tickColor: '#888' },
  legend: { labelFontSize: 13, titleFontSize: 13, symbolSize: 140, symbolStrokeWidth: 3 },
} as const;

/** `a/b.png` → `{ png: 'a/b.png', svg: 'a/b.svg' }`; a path without .png/.svg gets both extensions. */
export function plotPaths(path: string): { png: string; svg: string } {
  const base = /\.(png|svg)$/i.test(path) ? path.slice(0, -4) : path;
  return { png: `${base}.png`, svg: `${base}.svg` };
}

/** Renders a Vega spec headlessly (no canvas needed) to an SVG string. */
export async function renderVegaSvg(spec: Record<string, unknown>): Promise<string> {
  const vega = await loadVega('Plotting');
  const view = new vega.View(vega.parse(spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Rasterises SVG with sharp (librsvg) at `scale`× its size. */
export async function svgToPng(svg: string, scale = 2): Promise<Uint8Array> {
  const sharp = await loadSharp('Writing PNG plots');
  return sharp(Buffer.from(svg), { density: 72 * scale }).png({ compressionLevel: 9 }).toBuffer();
}

/** Renders a Vega spec and writes it as SVG and PNG (`scale`× pixels) next to each other. */
export async function writeVegaChart(spec: Record<string, unknown>, path: string, options: { scale?: number } = {}): Promise<PlotFiles> {
  const files = plotPaths(path);
  const svg = await renderVegaSvg(spec);
  const png = await svgToPng(svg, options.scale ?? 2);
  await ensureDir(files.png);
  await writeFileAtomic(files.svg, svg);
  await writeFileAtomic(files.png, png);
  return files;
}

export function escapeXml(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!);
}

/** Creates the folder that will hold `file`. */
export async function ensureDir(file: string): Promise<void> {
  const { fs, path } = await nodeApi('Writing plots');
  await fs.mkdir(path.dirname(file), { recursive: true });
}
