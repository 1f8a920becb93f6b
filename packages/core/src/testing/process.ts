import { spawn } from 'node:child_process';

export interface ProcessResult {
  /** Exit code, or null when a signal ended the process (a timeout included). */
  status: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

export interface RunProcessOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  /** Milliseconds before the process is killed (SIGKILL); none by default. */
  timeout?: number;
  /** Written to the child's stdin, which is then closed. */
  input?: string;
}

/**
 * `spawnSync` without blocking: a test worker that waits synchronously for a long child process
 * cannot answer vitest's RPC, which fails the whole run after 60 s with `Timeout calling
 * "onTaskUpdate"` although every test passed. Never rejects: a missing executable is status null
 * with the error in stderr.
 */
export function runProcess(file: string, args: readonly string[], options: RunProcessOptions = {}): Promise<ProcessResult> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = options.timeout ? setTimeout(() => child.kill('SIGKILL'), options.timeout) : undefined;
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ status: null, signal: null, stdout, stderr: `${stderr}${e.message}` });
    });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr });
    });
    child.stdin.on('error', () => {}); // a child that exits without reading its input
    child.stdin.end(options.input ?? '');
  });
}
