// Barrel for src/optim (filled in by its owner).
export {};
