export {
  cachePathFor,
  cachedFile,
  defaultCacheDir,
  downloadFile,
  evictCached,
  fetchToCache,
  offlineFromEnv,
  sha256File,
  type DownloadOptions,
  type DownloadProgress,
} from './download.js';
export {
  createPretrainedModel,
  downloadPretrained,
  getPretrainedTag,
  loadPretrained,
  loadPretrainedBytes,
  loadPretrainedWeights,
  type PretrainedOptions,
  type PretrainedResult,
} from './pretrained.js';
export { BROWSER_CACHE_NAME, evictBrowserCached, fetchBytesCached, isNodeRuntime } from './browser.js';
