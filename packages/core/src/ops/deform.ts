// Deformable convolution (filled in by the LITv2 work).
export {};
