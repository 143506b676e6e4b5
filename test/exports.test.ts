// The public types are all importable: every interface, type alias, class or enum of lib/ that an exported
// declaration names (a parameter, a result, a property, a base type), followed through those types in turn, is
// exported from lib/index.ts itself or through one of its namespaces (ops, nn, data). Members marked private or
// @internal are not public and are not followed.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const libDir = join(root, 'lib') + '/';

describe('the public API', () => {
  it('exports every type its exported declarations name', () => {
    const program = ts.createProgram([join(root, 'lib', 'index.ts')], { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, strict: true, noEmit: true });
    const checker = program.getTypeChecker();
    const index = program.getSourceFile(join(root, 'lib', 'index.ts'))!;
    const real = (s: ts.Symbol) => (s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s);
    // the symbols a user can import: index's exports, and the exports of its namespace re-exports
    const exported = new Set<ts.Symbol>();
    const start: ts.Symbol[] = [];
    for (const s of checker.getExportsOfModule(checker.getSymbolAtLocation(index)!)) {
      const r = real(s);
      if (r.flags & ts.SymbolFlags.ValueModule) for (const n of checker.getExportsOfModule(r)) { exported.add(real(n)); start.push(real(n)); }
      else { exported.add(r); start.push(r); }
    }
    const isInternal = (n: ts.Node) => ts.getJSDocTags(n).some((t) => t.tagName.text === 'internal') ||
      (ts.canHaveModifiers(n) && (ts.getModifiers(n) ?? []).some((m) => m.kind === ts.SyntaxKind.PrivateKeyword || m.kind === ts.SyntaxKind.ProtectedKeyword));
    const missing = new Map<string, string>();
    const seen = new Set<ts.Symbol>();
    const queue = [...start];
    const visit = (node: ts.Node, from: string): void => {
      if (isInternal(node)) return;
      if (ts.isTypeReferenceNode(node) || ts.isExpressionWithTypeArguments(node) || ts.isTypeQueryNode(node)) {
        const name = ts.isTypeReferenceNode(node) ? node.typeName : ts.isTypeQueryNode(node) ? node.exprName : node.expression;
        const sym = checker.getSymbolAtLocation(name);
        if (sym) {
          const r = real(sym);
          const decl = r.declarations?.[0];
          if (decl && decl.getSourceFile().fileName.startsWith(libDir) && !ts.isTypeParameterDeclaration(decl) && r.flags & (ts.SymbolFlags.Interface | ts.SymbolFlags.TypeAlias | ts.SymbolFlags.Class | ts.SymbolFlags.Enum)) {
            if (!exported.has(r) && !missing.has(r.name)) missing.set(r.name, `${from} (${decl.getSourceFile().fileName.slice(libDir.length)})`);
            if (!seen.has(r)) queue.push(r);
          }
        }
      }
      // a function's or method's body, and an initialiser, are not its type
      if (ts.isBlock(node) || (ts.isPropertyDeclaration(node) && node.initializer && !node.type)) return;
      ts.forEachChild(node, (c) => visit(c, from));
    };
    while (queue.length) {
      const s = queue.pop()!;
      if (seen.has(s)) continue;
      seen.add(s);
      for (const d of s.declarations ?? []) if (d.getSourceFile().fileName.startsWith(libDir)) visit(d, s.name);
    }
    expect(Object.fromEntries(missing)).toEqual({});
  }, 60_000);

  it('exports removeStaleTemps, which removes what the writes of a killed process left', async () => {
    const index = await import('../lib/index.js');
    const atomic = await import('../lib/io/atomic.js');
    expect(index.removeStaleTemps).toBe(atomic.removeStaleTemps);
  });
});
