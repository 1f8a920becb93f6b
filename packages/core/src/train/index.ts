// Barrel for src/train (filled in by its owner).
export {};
