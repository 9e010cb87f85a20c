// Node's built-in modules `events` and `url`, required by code the page bundles but does not run
// (vtk.js's XML writer, through xmlbuilder2): enough of them for those modules to load in a
// browser. Its classes extend EventEmitter when they are defined, so that one is a real class.
export class EventEmitter {
  constructor() { this._listeners = new Map(); }

  on(name, fn) {
    if (!this._listeners.has(name)) this._listeners.set(name, []);
    this._listeners.get(name).push(fn);
    return this;
  }

  addListener(name, fn) { return this.on(name, fn); }

  once(name, fn) {
    const wrapped = (...args) => { this.off(name, wrapped); fn(...args); };
    return this.on(name, wrapped);
  }

  off(name, fn) {
    const list = this._listeners.get(name) || [];
    this._listeners.set(name, list.filter((f) => f !== fn));
    return this;
  }

  removeListener(name, fn) { return this.off(name, fn); }

  removeAllListeners(name) {
    if (name === undefined) this._listeners.clear(); else this._listeners.delete(name);
    return this;
  }

  emit(name, ...args) {
    const list = this._listeners.get(name) || [];
    list.slice().forEach((fn) => fn.apply(this, args));
    return list.length > 0;
  }
}

export const URL = globalThis.URL;
export const URLSearchParams = globalThis.URLSearchParams;
export default { EventEmitter, URL, URLSearchParams };
