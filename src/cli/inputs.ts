// Input files, read and validated before anything starts; every error names the file, and for a
// bad field its path and the rule (exit status 2).

import { readFileSync } from 'node:fs';
import { InputError } from '../vmm/io/outputs.js';
import { type ScheduleFile } from '../vmm/explore/explorer.js';
import { parseSchedule } from '../vmm/explore/schedule-file.js';
import { ScenarioError, ScheduleError } from '../vmm/io/problems.js';
import { type Scenario, parseScenario } from '../vmm/scenario/schema.js';

/** A JSON file's contents; an unreadable file or bad JSON is an InputError naming the file. */
export function readJsonFile(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new InputError(`${file}: cannot read: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new InputError(`${file}: not JSON: ${(e as Error).message}`);
  }
}

/** Reads `file` and validates it with `parse`, whose error (a list of "path: rule") gets the file's name. */
function readValidated<T>(file: string, parse: (raw: unknown) => T, errorType: new (...a: never[]) => Error): T {
  const raw = readJsonFile(file);
  try {
    return parse(raw);
  } catch (e) {
    if (e instanceof errorType) throw new InputError(`${file}: ${e.message}`);
    throw e;
  }
}

export function readScenarioFile(file: string): Scenario {
  return readValidated(file, parseScenario, ScenarioError);
}

export function readScheduleFile(file: string): ScheduleFile {
  return readValidated(file, parseSchedule, ScheduleError);
}
