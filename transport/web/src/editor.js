// The text editor: CodeMirror 6 with what a shared document needs on top.
// It reports each local edit as code point primitives (ot.js), applies
// remote ones without reporting them, draws the others' carets and
// selections with their names, and leaves undo to the page (undo.js:
// only our own edits), so CodeMirror's own history is not loaded.
//
// The page keeps the authoritative text; this module only mirrors it.
import { Annotation, ChangeSet, Compartment, EditorSelection, EditorState, StateEffect, StateField } from '@codemirror/state';
import { EditorView, Decoration, WidgetType, keymap, drawSelection } from '@codemirror/view';
import { standardKeymap } from '@codemirror/commands';
import { StyleModule } from 'style-mod';
import { cpLen, cpToUnit } from './ot.js';

// CodeMirror's styles go into a constructed style sheet adopted by the
// document, not a <style> element, which the page's Content Security
// Policy (style-src 'self', no inline styles) refuses. Adopted sheets
// come after the page's own in the cascade, so style.css scopes its
// overrides one class deeper (.editor .text).
{
  const mount = StyleModule.mount;
  const sheet = typeof CSSStyleSheet === 'function' ? new CSSStyleSheet() : null;
  const mounted = [];
  StyleModule.mount = (root, modules, options) => {
    if (root !== document || !sheet || !document.adoptedStyleSheets) {
      mount(root, modules, options);
      return;
    }
    for (const m of Array.isArray(modules) ? modules : [modules]) {
      if (mounted.includes(m)) continue;
      mounted.push(m);
      for (const rule of m.rules) sheet.insertRule(rule, sheet.cssRules.length);
    }
    if (!document.adoptedStyleSheets.includes(sheet)) document.adoptedStyleSheets = [sheet, ...document.adoptedStyleSheets];
  };
}

// remote marks a transaction that applies others' changes (or a load).
const remote = Annotation.define();

// Carets: each {id, name, colour (a palette index), head, anchor} in UTF-16
// units of the current text; mapped through every change until the next
// presence update replaces them.
const setCarets = StateEffect.define();

class CaretWidget extends WidgetType {
  constructor(id, name, colour) {
    super();
    this.id = id;
    this.name = name;
    this.colour = colour;
  }

  eq(o) {
    return o.id === this.id && o.name === this.name && o.colour === this.colour;
  }

  toDOM() {
    const caret = document.createElement('span');
    caret.className = 'cm-remote-caret troupe-colour-' + this.colour;
    caret.dataset.clientId = this.id;
    caret.setAttribute('aria-label', this.name);
    const name = document.createElement('span');
    name.className = 'cm-remote-name';
    name.textContent = this.name;
    caret.append(name);
    return caret;
  }

  ignoreEvent() {
    return true;
  }
}

function decorate(carets) {
  const ranges = [];
  for (const c of carets) {
    const from = Math.min(c.head, c.anchor);
    const to = Math.max(c.head, c.anchor);
    if (from < to) {
      ranges.push(Decoration.mark({ class: 'cm-remote-selection troupe-colour-' + c.colour, attributes: { 'data-client-id': c.id } }).range(from, to));
    }
    ranges.push(Decoration.widget({ widget: new CaretWidget(c.id, c.name, c.colour), side: 1 }).range(c.head));
  }
  return Decoration.set(ranges, true);
}

const caretField = StateField.define({
  create: () => ({ carets: [], deco: Decoration.none }),
  update(value, tr) {
    let { carets } = value;
    for (const e of tr.effects) if (e.is(setCarets)) carets = e.value;
    if (carets === value.carets && !tr.docChanged) return value;
    if (tr.docChanged && carets === value.carets) {
      carets = carets.map((c) => ({ ...c, head: tr.changes.mapPos(c.head, 1), anchor: tr.changes.mapPos(c.anchor, 1) }));
    }
    return { carets, deco: decorate(carets) };
  },
  provide: (f) => EditorView.decorations.from(f, (v) => v.deco),
});

// Editor wraps one EditorView. Callbacks: onLocal(prims, kind) for an edit
// typed (kind 'input') or applied by apply(ps, 'undo'|'redo');
// onSelection() when the caret or selection moved; onUndo(), onRedo().
export class Editor {
  constructor(parent, { onLocal, onSelection, onUndo, onRedo }) {
    this.lock = new Compartment();
    this.view = new EditorView({
      parent,
      state: EditorState.create({
        doc: '',
        extensions: [
          caretField,
          drawSelection(),
          EditorView.lineWrapping,
          EditorView.contentAttributes.of({ 'aria-label': 'Document text', spellcheck: 'false', autocorrect: 'off', autocapitalize: 'off' }),
          this.lock.of([EditorState.readOnly.of(true), EditorView.editable.of(false)]),
          keymap.of([
            { key: 'Mod-z', run: () => (onUndo(), true), preventDefault: true },
            { key: 'Mod-y', run: () => (onRedo(), true), preventDefault: true },
            { key: 'Mod-Shift-z', run: () => (onRedo(), true), preventDefault: true },
            ...standardKeymap,
          ]),
          EditorView.updateListener.of((u) => {
            for (const tr of u.transactions) {
              if (!tr.docChanged) continue;
              const kind = tr.annotation(remote);
              if (kind === 'remote') continue;
              onLocal(this.primsOfTr(tr), kind || 'input');
            }
            if (u.selectionSet || u.docChanged) onSelection();
          }),
        ],
      }),
    });
  }

  // primsOfTr: a transaction's changes as code point primitives against
  // its start text.
  primsOfTr(tr) {
    const ps = [];
    const before = tr.startState.doc;
    let shift = 0; // code points inserted minus deleted so far
    tr.changes.iterChanges((fromA, toA, fromB, toB, inserted) => {
      const pos = cpLen(before.sliceString(0, fromA)) + shift;
      const text = inserted.toString();
      const n = cpLen(text);
      const gone = toA > fromA ? cpLen(before.sliceString(fromA, toA)) : 0;
      if (n) ps.push({ t: 'i', pos, n, text });
      if (gone) ps.push({ t: 'd', pos: pos + n, n: gone });
      shift += n - gone;
    });
    return ps;
  }

  // load replaces the whole text (no onLocal), caret at cp (code points).
  load(text, cp = 0) {
    const u = unitOf(text, cp);
    this.view.dispatch({
      changes: { from: 0, to: this.view.state.doc.length, insert: text },
      selection: EditorSelection.cursor(u),
      annotations: remote.of('remote'),
    });
  }

  // apply applies primitives to the text. kind 'remote': someone else's
  // (not reported); 'undo' or 'redo': ours, reported to onLocal with that
  // kind, the caret put after the last one.
  apply(ps, kind) {
    if (!ps.length) return;
    let text = this.view.state.doc.toString();
    let changes = null;
    for (const p of ps) {
      const from = cpToUnit(text, p.pos);
      const to = p.t === 'd' ? cpToUnit(text, p.n, from) : from;
      if (from < 0 || to < 0) throw new Error('op out of range: ' + JSON.stringify(p));
      const spec = { from, to, insert: p.t === 'i' ? p.text : '' };
      // Each primitive applies to the text after the ones before it.
      const cs = ChangeSet.of(spec, text.length);
      changes = changes ? changes.compose(cs) : cs;
      text = text.slice(0, from) + spec.insert + text.slice(to);
    }
    const tr = { changes, annotations: remote.of(kind) };
    if (kind !== 'remote') {
      const last = ps[ps.length - 1];
      tr.selection = EditorSelection.cursor(unitOf(text, last.t === 'i' ? last.pos + last.n : last.pos));
      tr.scrollIntoView = true;
    }
    this.view.dispatch(tr);
  }

  text() {
    return this.view.state.doc.toString();
  }

  // insert types text over the selection, as the keyboard would.
  insert(text) {
    this.view.dispatch(this.view.state.replaceSelection(text), { userEvent: 'input.type', scrollIntoView: true });
  }

  // selection: the main selection in code points, {anchor, head}.
  selection() {
    const r = this.view.state.selection.main;
    const doc = this.view.state.doc;
    const head = cpLen(doc.sliceString(0, r.head));
    const anchor = r.anchor === r.head ? head : cpLen(doc.sliceString(0, r.anchor));
    return { anchor, head };
  }

  // select puts the selection at anchor..head (code points).
  select(anchor, head = anchor) {
    const text = this.text();
    this.view.dispatch({ selection: EditorSelection.single(unitOf(text, anchor), unitOf(text, head)), scrollIntoView: true });
  }

  // setCarets draws the others: [{id, name, colour, head, anchor}] in
  // code points of the current text.
  setCarets(list) {
    const text = this.text();
    const carets = list.map((c) => ({ ...c, head: unitOf(text, c.head), anchor: unitOf(text, c.anchor == null ? c.head : c.anchor) }));
    this.view.dispatch({ effects: setCarets.of(carets) });
  }

  get readOnly() {
    return this.view.state.readOnly;
  }

  setReadOnly(on) {
    this.view.dispatch({ effects: this.lock.reconfigure(on ? [EditorState.readOnly.of(true), EditorView.editable.of(false)] : []) });
  }

  focus() {
    this.view.focus();
  }

  // caretPosition: where the caret widget of a client is drawn, in code
  // points of the text (from the DOM), or -1 if it is not drawn.
  caretPosition(id) {
    const el = this.view.contentDOM.querySelector('.cm-remote-caret[data-client-id="' + CSS.escape(id) + '"]');
    if (!el) return -1;
    const u = this.view.posAtDOM(el);
    return cpLen(this.view.state.doc.sliceString(0, u));
  }
}

// unitOf: the UTF-16 offset of code point cp in text, clamped to its end.
function unitOf(text, cp) {
  const u = cpToUnit(text, Math.max(0, cp));
  return u < 0 ? text.length : u;
}
