// Empty shell: the regionvit architecture lands with its own issue. Importing it is already safe.
export {};
