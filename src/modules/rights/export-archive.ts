import { createHash } from 'node:crypto';
import { strToU8, zipSync, type Zippable } from 'fflate';
import type { Actor } from '../../shared/actor.ts';
import type { DataSubject, ExportSection, FieldDisclosure, SubjectDataHandler } from '../../shared/subject-data.ts';
import type { AuditLog } from '../audit/index.ts';
import type { Keyring } from '../crypto/index.ts';

/** Version of the archive layout; bumped when a file's shape changes. */
export const ARCHIVE_SCHEMA_VERSION = 1;
/** Rows of a CSV table shown in the readable summary; the CSV file has them all. */
const HTML_ROWS = 100;

export interface SubjectExporterDeps {
  audit: AuditLog;
  keyring: Keyring;
  handlers: readonly SubjectDataHandler[];
  /** The controller's name, shown in the summary. */
  controllerName?: string;
}

export interface ManifestFile {
  readonly name: string;
  readonly module: string | null;
  readonly bytes: number;
  readonly sha256: string;
}

/** `manifest.json`: who the archive is about (pseudonym), for which request, when, and what it holds. */
export interface ArchiveManifest {
  readonly schemaVersion: number;
  readonly subject: string;
  readonly requestId: string;
  readonly generatedAt: string;
  readonly controller: string | null;
  readonly modules: readonly string[];
  readonly files: readonly ManifestFile[];
}

/** RFC 4180 cell; text that a spreadsheet would run as a formula gets a leading apostrophe. */
export function csvCell(value: string | number | boolean | null): string {
  if (value === null) return '';
  let text = String(value);
  if (typeof value === 'string' && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export function toCsv(header: readonly string[], rows: readonly (readonly (string | number | boolean | null)[])[]): string {
  const lines = [header.map(csvCell).join(',')];
  for (const row of rows) lines.push(row.map(csvCell).join(','));
  return lines.join('\r\n') + '\r\n';
}

const HTML_ESCAPES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for HTML element content and quoted attributes. */
export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => HTML_ESCAPES[c] as string);
}

function fieldTable(fields: readonly FieldDisclosure[]): string {
  if (fields.length === 0) return '<p>No fields.</p>';
  const rows = fields
    .map(
      (f) =>
        `<tr><td><code>${escapeHtml(f.field)}</code></td><td>${escapeHtml(f.category)}</td><td>${escapeHtml(f.purposes.join(', ') || '—')}</td><td>${escapeHtml(f.source)}</td><td>${escapeHtml(f.recipients.join(', ') || 'nobody outside the controller')}</td><td>${escapeHtml(f.retention ?? 'until erasure')}</td></tr>`,
    )
    .join('\n');
  return `<table><thead><tr><th>Field</th><th>Category</th><th>Purposes</th><th>Source</th><th>Recipients</th><th>Kept for</th></tr></thead><tbody>\n${rows}\n</tbody></table>`;
}

function sectionHtml(section: ExportSection): string {
  let body: string;
  if (section.csv) {
    const shown = section.csv.rows.slice(0, HTML_ROWS);
    const head = section.csv.header.map((h) => `<th>${escapeHtml(h)}</th>`).join('');
    const rows = shown.map((r) => `<tr>${r.map((c) => `<td>${escapeHtml(c ?? '')}</td>`).join('')}</tr>`).join('\n');
    const more = section.csv.rows.length > shown.length ? `<p>Showing ${shown.length} of ${section.csv.rows.length} rows; all are in <code>${escapeHtml(section.csv.file)}</code>.</p>` : '';
    body = `<p>${section.csv.rows.length} rows.</p><div class="scroll"><table><thead><tr>${head}</tr></thead><tbody>\n${rows}\n</tbody></table></div>${more}`;
  } else {
    body = `<pre>${escapeHtml(JSON.stringify(section.data, null, 2))}</pre>`;
  }
  return `<section><h2>${escapeHtml(section.title)}</h2><p>File: <code>${escapeHtml(section.module)}.json</code></p>
<h3>What we hold, why, where from, who gets it, how long</h3>
${fieldTable(section.fields)}
<h3>The data</h3>
${body}</section>`;
}

function indexHtml(manifest: ArchiveManifest, sections: readonly ExportSection[]): string {
  const files = manifest.files.map((f) => `<li><code>${escapeHtml(f.name)}</code> (${f.bytes} bytes)</li>`).join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Your data</title>
<style>body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;line-height:1.4}table{border-collapse:collapse;font-size:.9rem}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}pre{background:#f6f6f6;padding:1rem;overflow:auto}.scroll{overflow:auto}</style>
</head><body>
<h1>Your data${manifest.controller ? ` held by ${escapeHtml(manifest.controller)}` : ''}</h1>
<p>Request <code>${escapeHtml(manifest.requestId)}</code>, generated ${escapeHtml(manifest.generatedAt)}. You appear in our records under the pseudonym <code>${escapeHtml(manifest.subject)}</code>.</p>
<p>For every field: its data category, the purposes it serves, where it came from, who receives it and how long it is kept (GDPR Art. 15(1)). The JSON and CSV files in this archive hold the same data in machine-readable form (Art. 20).</p>
<p>Files:</p><ul>${files}</ul>
${sections.map(sectionHtml).join('\n')}
</body></html>
`;
}

/** The access and portability archive: one zip with a manifest, a JSON file per module, CSV tables and a readable summary. */
export class SubjectExporter {
  readonly #deps: SubjectExporterDeps;

  constructor(deps: SubjectExporterDeps) {
    this.#deps = deps;
  }

  /** The zip archive of an access/portability request (manifest.json, <module>.json per handler, events.csv, index.html); audited. */
  async archive(subject: DataSubject, meta: { requestId: string }, actor: Actor): Promise<Uint8Array> {
    const pseudonym = this.#deps.keyring.pseudonym('subject', subject.profileId);
    const generatedAt = new Date().toISOString();
    const sections: ExportSection[] = [];
    for (const handler of this.#deps.handlers) sections.push(await handler.export(subject));
    const files: Zippable = {};
    const listed: ManifestFile[] = [];
    const add = (name: string, module: string | null, bytes: Uint8Array) => {
      files[name] = bytes;
      listed.push({ name, module, bytes: bytes.byteLength, sha256: createHash('sha256').update(bytes).digest('hex') });
    };
    for (const section of sections) {
      add(`${section.module}.json`, section.module, strToU8(JSON.stringify({ module: section.module, title: section.title, subject: pseudonym, fields: section.fields, data: section.data }, null, 2)));
      if (section.csv) add(section.csv.file, section.module, strToU8(toCsv(section.csv.header, section.csv.rows)));
    }
    const manifestBase = {
      schemaVersion: ARCHIVE_SCHEMA_VERSION,
      subject: pseudonym,
      requestId: meta.requestId,
      generatedAt,
      controller: this.#deps.controllerName ?? null,
      modules: sections.map((s) => s.module),
    };
    add('index.html', null, strToU8(indexHtml({ ...manifestBase, files: listed }, sections)));
    const manifest: ArchiveManifest = { ...manifestBase, files: listed };
    files['manifest.json'] = strToU8(JSON.stringify(manifest, null, 2));
    const zip = zipSync(files, { level: 6, mtime: new Date(generatedAt) });
    await this.#deps.audit.append({
      actor: actor.id,
      role: actor.role,
      action: 'rights.export',
      purpose: 'essential.legal_obligation',
      subject: pseudonym,
      resource: `export:${meta.requestId}`,
      details: { requestId: meta.requestId, files: listed.map((f) => f.name), bytes: zip.byteLength },
    });
    return zip;
  }
}
