// Validates rendered Prometheus Operator objects (ServiceMonitor, PrometheusRule) with the
// models of npm's @kubernetes-models/prometheus-operator:
//
//   node check-monitoring.mjs NODE_MODULES_DIR FILE.json...
//
// Each FILE holds a JSON array of objects. Every object must be a kind the package models
// (an unknown apiVersion or kind fails) and pass the model's JSON-schema validation. The
// models' schemas admit unknown fields, which the API server would then drop without a
// word, so every field is also checked against the model's TypeScript declarations
// (the .d.ts files the package ships): a misspelt field fails too.
// Exit status 0 when every object passes, 1 otherwise.

import { readFileSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";

const [modules, ...files] = process.argv.slice(2);
if (!modules || files.length === 0) {
  console.error("usage: node check-monitoring.mjs NODE_MODULES_DIR FILE.json...");
  process.exit(2);
}
const pkg = join(modules, "@kubernetes-models", "prometheus-operator");
const GROUP = "monitoring.coreos.com";

// --- the declarations: which fields each model has, and their types -----------------------

const declCache = new Map();

/** The .d.ts file an import specifier names, seen from the file `from`. */
function resolveDecl(spec, from) {
  let base;
  if (spec.startsWith(".")) base = join(dirname(from), spec);
  else base = join(modules, spec);
  base = base.replace(/\.js$/, "");
  for (const candidate of [base + ".d.ts", join(base, "index.d.ts")]) {
    if (existsSync(candidate)) return candidate;
  }
  return null;
}

/** The body of the first `{ ... }` block after `start` in `text`. */
function block(text, start) {
  const open = text.indexOf("{", start);
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    if (text[i] === "{") depth++;
    else if (text[i] === "}" && --depth === 0) return text.slice(open + 1, i);
  }
  return "";
}

/** Top-level `"name"?: TYPE;` members of a declaration body. */
function members(body) {
  const out = new Map();
  const clean = body.replace(/\/\*[\s\S]*?\*\//g, "");
  let depth = 0;
  let current = "";
  for (const ch of clean) {
    if (ch === "{" || ch === "<" || ch === "(") depth++;
    if (ch === "}" || ch === ">" || ch === ")") depth--;
    if (ch === ";" && depth === 0) {
      const m = current.trim().match(/^"([^"]+)"\??\s*:\s*([\s\S]+)$/);
      if (m) out.set(m[1], m[2].replace(/\s+/g, " ").trim());
      current = "";
    } else current += ch;
  }
  return out;
}

/** Fields of the model declared in `file`: a Map name -> {type, file}, or null. */
function declaration(file) {
  if (declCache.has(file)) return declCache.get(file);
  declCache.set(file, null);
  const text = readFileSync(file, "utf8");
  const imports = new Map();
  for (const m of text.matchAll(/import \{([^}]+)\} from "([^"]+)"/g)) {
    for (const name of m[1].split(",").map((s) => s.trim()).filter(Boolean)) imports.set(name, m[2]);
  }
  let fields = null;
  // The class of a model lists every field, inherited ones included.
  const cls = text.search(/export declare class \w+ extends Model</);
  if (cls >= 0) {
    fields = members(block(text, cls));
  } else {
    const iface = text.match(/export interface \w+(?: extends ([\w, ]+))? \{/);
    if (iface) {
      fields = members(block(text, iface.index));
      for (const parent of (iface[1] || "").split(",").map((s) => s.trim()).filter(Boolean)) {
        const parentFile = imports.has(parent) ? resolveDecl(imports.get(parent), file) : null;
        const inherited = parentFile && declaration(parentFile);
        if (!inherited) return null; // cannot know every field: no strict check here
        for (const [k, v] of inherited) if (!fields.has(k)) fields.set(k, v);
      }
    }
  }
  if (!fields) return null;
  const typed = new Map();
  for (const [name, type] of fields) {
    if (type.type) typed.set(name, type);
    else typed.set(name, { type, file, imports });
  }
  declCache.set(file, typed);
  return typed;
}

/** Check `value` against the declared type `type` (as written in `file`). */
function checkType(value, type, file, imports, path, errors) {
  if (value === null || value === undefined) return;
  let m;
  if ((m = type.match(/^Array<(.+)>$/))) {
    if (Array.isArray(value)) value.forEach((v, i) => checkType(v, m[1], file, imports, `${path}[${i}]`, errors));
    return;
  }
  if ((m = type.match(/^\{ \[key: string\]: (.+); \}$/))) {
    if (typeof value === "object") {
      for (const [k, v] of Object.entries(value)) checkType(v, m[1], file, imports, `${path}.${k}`, errors);
    }
    return;
  }
  if (/^\w+$/.test(type) && imports.has(type) && typeof value === "object" && !Array.isArray(value)) {
    const target = resolveDecl(imports.get(type), file);
    const fields = target && declaration(target);
    if (fields) checkObject(value, fields, path, errors);
  }
}

function checkObject(value, fields, path, errors) {
  for (const [k, v] of Object.entries(value)) {
    const field = fields.get(k);
    if (!field) {
      errors.push(`${path}.${k}: unknown field (known: ${[...fields.keys()].join(", ")})`);
      continue;
    }
    checkType(v, field.type, field.file, field.imports, `${path}.${k}`, errors);
  }
}

// --- the objects ---------------------------------------------------------------------------

let failed = 0;
let checked = 0;
for (const file of files) {
  const objects = JSON.parse(readFileSync(file, "utf8"));
  for (const obj of objects) {
    const where = `${file}: ${obj.kind}/${obj.metadata?.name}`;
    const [group, version] = String(obj.apiVersion || "").split("/");
    const modelFile = join(pkg, `${group}`, `${version}`, `${obj.kind}.js`);
    if (group !== GROUP || !version || !/^\w+$/.test(String(obj.kind)) || !existsSync(modelFile)) {
      console.log(`FAIL ${where}: no model for apiVersion ${obj.apiVersion} kind ${obj.kind} in @kubernetes-models/prometheus-operator`);
      failed++;
      continue;
    }
    const Model = (await import(pathToFileURL(modelFile).href))[obj.kind];
    const errors = [];
    try {
      new Model(obj).validate();
    } catch (e) {
      errors.push(String(e.message || e));
    }
    const fields = declaration(modelFile.replace(/\.js$/, ".d.ts"));
    if (fields) checkObject(obj, fields, obj.kind, errors);
    else errors.push(`no declarations for ${obj.kind}: cannot check field names`);
    if (errors.length) {
      failed++;
      for (const e of errors) console.log(`FAIL ${where}: ${e}`);
    } else {
      checked++;
      console.log(`ok   ${where} (${obj.apiVersion})`);
    }
  }
}
if (failed) {
  console.log(`${failed} Prometheus Operator object(s) failed`);
  process.exit(1);
}
console.log(`${checked} Prometheus Operator object(s) valid`);
