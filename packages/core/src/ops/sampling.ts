// Bilinear sampling (filled in by the LITv2 work).
export {};
