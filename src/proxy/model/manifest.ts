import { parseAllDocuments } from 'yaml';
import { InvalidArgumentError } from '../../core/errors.js';

/**
 * Splits manifest text (multi-document YAML, or JSON, which is YAML) into
 * plain objects. `kind: List` documents are expanded into their items; empty
 * documents are skipped. Syntax errors name the source and document.
 */
export function parseManifests(text: string, source = 'manifest'): unknown[] {
  const out: unknown[] = [];
  const docs = parseAllDocuments(text);
  const list = Array.isArray(docs) ? docs : [docs];
  list.forEach((doc, i) => {
    if (doc.errors.length > 0) {
      throw new InvalidArgumentError(`${source} document ${i + 1}`, doc.errors[0]!.message.split('\n')[0]!);
    }
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) return;
    const items = (value as { kind?: unknown; items?: unknown }).kind === 'List' ? (value as { items?: unknown }).items : undefined;
    if (Array.isArray(items)) out.push(...items);
    else out.push(value);
  });
  return out;
}
