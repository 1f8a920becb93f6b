/**
 * WebGL in a browser (tfjs-backend-webgl): what the page's WebGL would run on, found with a
 * throw-away context before the tfjs backend initialises (so a context passed over is released at
 * once, and tfjs's own is made only for the backend that is used).
 */

/** What `probeWebGL` found. */
export type WebGLProbe =
  | {
      ok: true;
      /** The renderer (unmasked where the browser allows), e.g. "ANGLE (NVIDIA, …)" or "… SwiftShader …". */
      renderer: string;
      /** A CPU rasterizer (SwiftShader, llvmpipe…): WebGL works, but on the CPU. */
      software: boolean;
      /** WebGL version of the context (tfjs prefers 2). */
      version: 1 | 2;
      /** Float32 render targets (EXT_color_buffer_float): without them tfjs computes in float16. */
      float32: boolean;
    }
  | { ok: false; reason: string };

const SOFTWARE_RENDERER = /swiftshader|llvmpipe|lavapipe|softpipe|software|basic render|microsoft basic/i;

interface GLLike {
  RENDERER: number;
  getParameter(p: number): unknown;
  getExtension(name: string): unknown;
}
interface CanvasLike {
  getContext(kind: string, attrs?: Record<string, unknown>): GLLike | null;
}

function newCanvas(): CanvasLike | undefined {
  const g = globalThis as { OffscreenCanvas?: new (w: number, h: number) => CanvasLike; document?: { createElement(tag: string): CanvasLike } };
  if (typeof g.OffscreenCanvas === 'function') return new g.OffscreenCanvas(1, 1);
  return g.document?.createElement('canvas');
}

/** Whether a renderer string names a CPU rasterizer. */
export function isSoftwareRenderer(renderer: string): boolean {
  return SOFTWARE_RENDERER.test(renderer);
}

/** The WebGL a page offers (tfjs-backend-webgl's preference: WebGL 2, else 1), or why there is none. Never throws. */
export function probeWebGL(): WebGLProbe {
  let canvas: CanvasLike | undefined;
  try {
    canvas = newCanvas();
  } catch {
    canvas = undefined;
  }
  if (!canvas) return { ok: false, reason: 'no canvas here (WebGL needs a browser page, or a worker with OffscreenCanvas)' };
  let gl: GLLike | null = null;
  let version: 1 | 2 = 2;
  try {
    gl = canvas.getContext('webgl2');
    if (!gl) {
      version = 1;
      gl = canvas.getContext('webgl');
    }
  } catch {
    gl = null;
  }
  if (!gl) return { ok: false, reason: 'the browser gives no WebGL context (WebGL disabled, or the GPU blocklisted)' };
  try {
    const debug = gl.getExtension('WEBGL_debug_renderer_info') as { UNMASKED_RENDERER_WEBGL: number } | null;
    const renderer = String((debug ? gl.getParameter(debug.UNMASKED_RENDERER_WEBGL) : undefined) ?? gl.getParameter(gl.RENDERER) ?? 'unknown renderer');
    const float32 = version === 2 ? Boolean(gl.getExtension('EXT_color_buffer_float')) : Boolean(gl.getExtension('OES_texture_float') && gl.getExtension('WEBGL_color_buffer_float'));
    return { ok: true, renderer, software: isSoftwareRenderer(renderer), version, float32 };
  } finally {
    // Browsers cap live contexts (16 in Chrome); give this one back now.
    (gl.getExtension('WEBGL_lose_context') as { loseContext(): void } | null)?.loseContext();
  }
}
