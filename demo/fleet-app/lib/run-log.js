'use strict';

const fs = require('fs');

// Appends one JSON line per event to the fleet's shared run log. Small O_APPEND writes of whole
// lines do not interleave, so several processes can share the file.
exports.record = (event, fields) => {
  const line = JSON.stringify({ event, node: process.env.FLEET_NODE, pid: process.pid, at: Date.now(), ...fields });
  fs.appendFileSync(process.env.FLEET_LOG, line + '\n');
};
