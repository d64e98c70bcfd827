// Progress bars on a terminal (cli-progress), loaded only when one is shown: every other run
// of the CLI (the suite runs it hundreds of times, scripts too) does not pay for loading it.
import type { SingleBar } from 'cli-progress';

/** A progress bar on stderr with this format line, or null when none is to be shown. */
export async function progressBar(show: boolean, format: string, extra: { etaBuffer?: number } = {}): Promise<SingleBar | null> {
  if (!show) return null;
  const { default: cliProgress } = await import('cli-progress');
  return new cliProgress.SingleBar({ format, hideCursor: true, stream: process.stderr, ...extra }, cliProgress.Presets.shades_classic);
}
