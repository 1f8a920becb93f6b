// Changesets changelog generator (.changeset/config.json "changelog"): one list item per changeset,
// its summary as written. No commit hashes, and no "Updated dependencies" lines: every package
// shares one version (the fixed group), so they would only repeat the heading.
'use strict';

async function getReleaseLine(changeset) {
  const [first, ...rest] = changeset.summary.trim().split('\n').map((l) => l.trimEnd());
  return [`- ${first}`, ...rest.map((l) => (l ? `  ${l}` : ''))].join('\n');
}

async function getDependencyReleaseLine() {
  return '';
}

module.exports = { getReleaseLine, getDependencyReleaseLine };
