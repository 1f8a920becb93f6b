// Empty shell: the hilo architecture lands with its own issue. Importing it is already safe.
export {};
