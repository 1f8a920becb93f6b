// Barrel for src/bench (filled in by its owner).
export {};
