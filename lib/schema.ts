// zod, configured once, before any config is parsed (config.ts imports this module). The mini build
// keeps the bundle small (start-up is paid on every CNI call), the English messages make field errors
// readable, and jitless avoids compiling parsers with eval for schemas each process uses once.
import { config } from 'zod/mini';
import en from 'zod/v4/locales/en.js';

config(en());
config({ jitless: true });
