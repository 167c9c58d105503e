'use strict';
// Loads the native addon built by `napi build --platform` (openai-agents-session.<triple>.node)
// from this folder; a build without --platform (openai-agents-session.node) is found too.
const { existsSync } = require('node:fs');
const { join } = require('node:path');

function isMusl() {
  if (process.platform !== 'linux') return false;
  try {
    const report = process.report && process.report.getReport();
    const header = report && (typeof report === 'string' ? JSON.parse(report) : report).header;
    return !(header && header.glibcVersionRuntime);
  } catch {
    return false;
  }
}

function triples() {
  const { platform, arch } = process;
  if (platform === 'linux') {
    const abi = isMusl() ? 'musl' : arch === 'arm' ? 'gnueabihf' : 'gnu';
    return [`linux-${arch}-${abi}`];
  }
  if (platform === 'darwin') return [`darwin-${arch}`, 'darwin-universal'];
  if (platform === 'win32') return [`win32-${arch}-msvc`];
  return [`${platform}-${arch}`];
}

function load() {
  const names = [...triples().map((t) => `openai-agents-session.${t}.node`), 'openai-agents-session.node'];
  for (const name of names) {
    const path = join(__dirname, name);
    if (existsSync(path)) return require(path);
  }
  throw new Error(
    `openai-agents-session: no native addon for ${process.platform}-${process.arch} in ${__dirname} ` +
      `(looked for ${names.join(', ')}); build it with \`npx napi build --platform\``,
  );
}

module.exports = load();
