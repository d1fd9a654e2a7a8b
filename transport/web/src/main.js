// The bundle's entry (build.mjs → editor.js): the editor and the modules
// app.js uses, as globals, since app.js is a plain script.
import * as OT from './ot.js';
import { Editor } from './editor.js';
import { UndoHistory, invert } from './undo.js';

window.troupeOT = OT;
window.troupeEditor = { Editor, UndoHistory, invert };
