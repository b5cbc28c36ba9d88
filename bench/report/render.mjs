#!/usr/bin/env node
// Re-renders the Markdown and SVG charts of a saved run from its JSON (raw
// suite output is kept there), e.g. after a change to the report code:
//
//   node bench/report/render.mjs bench/results/<timestamp>.json
import { readFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { buildReports, writeReport } from './write.mjs';

const file = process.argv[2];
if (!file) {
  console.error('usage: node bench/report/render.mjs bench/results/<timestamp>.json');
  process.exit(2);
}
const run = buildReports(JSON.parse(readFileSync(file, 'utf8')));
for (const f of writeReport(run, dirname(file), basename(file, '.json'))) console.log(f);
