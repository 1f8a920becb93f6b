// Placeholder until the WebGPU-in-Node loader lands; see issue 3.
export type DawnResult = { ok: true; adapter: string } | { ok: false; reason: string };
export async function installNodeWebGPU(): Promise<DawnResult> {
  return { ok: false, reason: 'the Dawn loader is not implemented yet' };
}
