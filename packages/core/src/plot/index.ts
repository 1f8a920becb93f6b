export { plotLearningCurves } from './curves.js';
export type { CurveRecord, StepRecord, LearningCurveHistory, LearningCurveOptions } from './curves.js';
export { plotConfusionMatrix } from './confusion.js';
export type { ConfusionMatrixOptions } from './confusion.js';
export { plotPredictionGrid } from './grid.js';
export type { PlotImage, PredictionGridInput } from './grid.js';
export { renderVegaSvg, svgToPng, writeVegaChart, plotPaths, CHART_CONFIG } from './render.js';
export type { PlotFiles } from './render.js';
