'use strict';

const path = require('path');

// The plugin from this checkout (compiled by `npm run build`), as a user's app would enable the package.
exports.redlock = { enable: true, path: path.join(__dirname, '../../..') };
