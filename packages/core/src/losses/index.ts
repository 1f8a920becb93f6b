// Barrel for src/losses (filled in by its owner).
export {};
