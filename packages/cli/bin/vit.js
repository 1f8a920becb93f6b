#!/usr/bin/env node
// Committed launcher: npm links a workspace's bin at install time, before `dist/` is built,
// and skips targets that do not exist yet. The real entry is the built dist/bin.js.
import '../dist/bin.js';
