#!/usr/bin/env node
// Validate a .glb/.gltf with the Khronos glTF-Validator and print a JSON summary.
// Usage: node tools/validate_gltf.mjs FILE [--max-issues N]
// Exit codes: 0 valid (warnings allowed), 1 the validator reports errors, 2 usage/IO problem.
import fs from "node:fs";
import path from "node:path";
import validator from "gltf-validator";

const args = process.argv.slice(2);
const file = args.find((a) => !a.startsWith("--"));
const maxIdx = args.indexOf("--max-issues");
const maxIssues = maxIdx >= 0 ? Number(args[maxIdx + 1]) : 100;
if (!file) {
  console.error("usage: node tools/validate_gltf.mjs FILE.glb|FILE.gltf [--max-issues N]");
  process.exit(2);
}

let bytes;
try {
  bytes = fs.readFileSync(file);
} catch (err) {
  console.error(`cannot read ${file}: ${err.message}`);
  process.exit(2);
}

// .gltf files may reference buffers/images next to them.
const loadExternal = (uri) =>
  new Promise((resolve, reject) => {
    const full = path.resolve(path.dirname(file), decodeURIComponent(uri));
    fs.readFile(full, (err, data) => (err ? reject(err.toString()) : resolve(data)));
  });

try {
  const report = await validator.validateBytes(new Uint8Array(bytes), {
    uri: path.basename(file),
    maxIssues,
    externalResourceFunction: loadExternal,
  });
  const issues = report.issues;
  const summary = {
    file,
    validatorVersion: report.validatorVersion,
    numErrors: issues.numErrors,
    numWarnings: issues.numWarnings,
    numInfos: issues.numInfos,
    numHints: issues.numHints,
    truncated: issues.truncated,
    messages: issues.messages.map((m) => ({
      code: m.code,
      severity: ["error", "warning", "info", "hint"][m.severity] ?? m.severity,
      pointer: m.pointer,
      message: m.message,
    })),
    info: report.info,
  };
  console.log(JSON.stringify(summary, null, 2));
  process.exit(issues.numErrors > 0 ? 1 : 0);
} catch (err) {
  console.error(`glTF validator failed on ${file}: ${err}`);
  process.exit(2);
}
