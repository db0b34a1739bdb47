// Berth dashboard: the few lines of script the pages need, embedded in the server binary.
// Text from the server is only ever inserted with textContent, never as markup.
"use strict";
