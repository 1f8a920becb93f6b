// Barrel for src/plot (filled in by its owner).
export {};
