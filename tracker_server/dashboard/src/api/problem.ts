// The one error type of the API client: an RFC 9457 problem, or a transport failure.
import type { Problem as WireProblem, ProblemFieldError } from './types';

/** A problem as received: an error body may lack any field (a proxy's, FastAPI's own). */
type Problem = Partial<WireProblem>;

export class ApiError extends Error {
  /** HTTP status; 0 when the request never got a response. */
  readonly status: number;
  readonly type: string;
  readonly title: string;
  readonly detail: string;
  readonly instance: string;
  readonly errors: readonly ProblemFieldError[];

  constructor(status: number, problem: Problem) {
    const title = problem.title ?? (status ? `HTTP ${status}` : 'Network error');
    super(problem.detail ? `${title}: ${problem.detail}` : title);
    this.name = 'ApiError';
    this.status = status;
    this.type = problem.type ?? 'about:blank';
    this.title = title;
    this.detail = problem.detail ?? '';
    this.instance = problem.instance ?? '';
    this.errors = Array.isArray(problem.errors) ? problem.errors : [];
  }

  /** The first error about one request field (e.g. "filter"), if the server named it. */
  fieldError(field: string): ProblemFieldError | undefined {
    return this.errors.find((e) => e.field === field);
  }
}

function isProblem(v: unknown): v is Problem {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Reads an error response: problem+json when it is one, its text otherwise. */
export async function problemFromResponse(res: Response): Promise<ApiError> {
  const text = await res.text().catch(() => '');
  let problem: Problem = { status: res.status, title: res.statusText || undefined };
  if (text) {
    try {
      const body: unknown = JSON.parse(text);
      if (isProblem(body)) {
        problem = { ...problem, ...body };
        // FastAPI's default error body is {detail: "..."} or {detail: [...]}.
        if (typeof body.detail !== 'string' && body.detail !== undefined) {
          problem.detail = JSON.stringify(body.detail);
        }
      }
    } catch {
      problem.detail = text.slice(0, 500);
    }
  }
  return new ApiError(res.status, problem);
}
