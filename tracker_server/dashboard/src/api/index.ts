// The API client: typed endpoint functions, decoded models, one error type.
export * from './endpoints';
export * from './model';
export { ApiError } from './problem';
export { isAbort, setApiBase, setCsrfToken, setUnauthorizedHandler } from './client';
