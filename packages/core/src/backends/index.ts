// Barrel for src/backends (filled in by its owner).
export {};
