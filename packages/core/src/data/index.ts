// Barrel for src/data (filled in by its owner).
export {};
