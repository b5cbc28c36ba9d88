// `npm run lint:deps` (part of `npm test`): no import cycles, and process spawning kept
// behind the side-effect layer. Known exceptions (debt the redesign, issue 18, removes)
// are listed in .dependency-cruiser-known-violations.json; a new violation fails.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'Import cycles (type-only imports count) make module order matter and layers blur.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'spawn-only-in-exec',
      comment: 'Only src/exec (and the kernel link monitor) start processes.',
      severity: 'error',
      from: { path: '^src/', pathNot: ['^src/exec/', '^src/kernel/monitor\\.ts$'] },
      to: { path: '^(node:)?child_process$' },
    },
    {
      name: 'runner-only-in-side-effect-layer',
      comment:
        'Only src/kernel and src/netfilter (the side-effect layer) run commands for the daemons; ' +
        'the lab and the VM tier, which start whole programs, may use the runner too.',
      severity: 'error',
      from: { path: '^src/', pathNot: ['^src/exec/', '^src/kernel/', '^src/netfilter/', '^src/lab/', '^src/vm/'] },
      to: { path: '^src/exec/' },
    },
    {
      name: 'no-test-code-in-src',
      comment: 'Production code never imports tests or their helpers.',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^test/' },
    },
  ],
  options: {
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    doNotFollow: { path: 'node_modules' },
    includeOnly: { path: ['^src/', '^test/', '^node:', 'child_process'] },
    builtInModules: { add: [] },
  },
};
