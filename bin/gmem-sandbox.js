#!/usr/bin/env node
// The CLI runs the built JavaScript (npm install / npm ci build it through `prepare`).
import '../dist/src/cli/main.js';
