//! Parser (input: the tokens of a `model!` invocation; output: [`crate::ast::File`]).
//!
//! Syntax errors go to the [`Diagnostics`] sink at the offending token. A statement that fails to parse
//! is skipped up to the next top-level `;` (or the next statement keyword), so every syntax error of a
//! model is reported in one compile; a model whose header is broken is reported and skipped.
//! Never panics on any token stream.
//!
//! ```text
//! file  := ('@' 'with' 'full'? '{' file '}' 'as' path ';')* model+   (the `@with` entries come from callbacks)
//! model := outer-attr* vis 'struct' Ident '{' stmt* '}'
//! stmt  := 'input' Ident ':' '[' int (',' int)* ','? ']' ('as' Ident)? ';'
//!        | 'layer' Ident '=' ctor ';'
//!        | 'let' (Ident | '(' Ident (',' Ident)* ','? ')') '=' expr ';'
//!        | 'output' Ident '=' expr ('as' Ident 'target')? ';'
//! ctor  := path ('(' args ')')?
//! args  := (arg (',' arg)* ','?)?      arg := (Ident '=')? value
//! value := '-'? int | '-'? float | 'true' | 'false' | string | Ident | Ident '(' args ')' | '(' value,* ')' | '[' value,* ']'
//! expr  := Ident | '[' expr,* ']' | callee '(' expr (',' expr)* (',' Ident '=' kwval)* ','? ')'
//! kwval := expr | '-'? int | '-'? float | 'true' | 'false' | string   (a tensor or a call-time literal)
//! callee:= Ident                      (a layer instance: `enc(x)`)
//!        | path '(' args ')'          (an inline constructor: `Dense(16)(x)`)
//! ```
//!
//! Nested groups are always consumed to their end (see `within`), even on error, so syn never adds a
//! second "unexpected token" error for the same mistake.
//!
//! Recursion is bounded, so no input overflows the compiler's stack (a proc macro shares rustc's): a
//! tensor expression or an argument value nests at most [`MAX_NESTING`] levels, an error at the token
//! that crosses the limit, and so does an attribute, which syn parses recursively; before syn sees them,
//! tokens nested deeper than [`MAX_TOKEN_DEPTH`] groups are rejected by an iterative scan
//! (`deeper_than`). Later passes recurse only along the syntax tree (and `resolve` through nested
//! models, at most [`MAX_NESTING`] deep), so these bounds hold for them too.

use proc_macro2::{Delimiter, Span, TokenStream, TokenTree};
use syn::buffer::Cursor;
use syn::parse::{Parse, ParseBuffer, ParseStream, Parser};
use syn::{braced, bracketed, parenthesized, token, Attribute, Ident, LitBool, LitFloat, LitInt, LitStr, Token};

use crate::ast::{
    Arg, ArgKind, ArgValue, Args, CallExpr, CallKeyword, CallValue, Callee, Ctor, Dep, Dim, Expr, File, InputDecl, LayerDecl, LetStmt,
    ListExpr, Model, OutputStmt, Stmt,
};
use crate::diag::{Diagnostic, Diagnostics};
use crate::suggest::did_you_mean;

/// The words that begin a statement.
const STMT_KEYWORDS: [&str; 4] = ["input", "layer", "let", "output"];
/// What a shape looks like.
const SHAPE_EXPECTED: &str = "expected a shape like `[8]` or `[32, 32, 3]` (integer dimensions, batch excluded)";
/// What a tensor expression looks like.
const EXPR_EXPECTED: &str = "expected a tensor: a name, a list like `[a, b]`, or a layer call like `Dense(8)(x)` or `enc(x)`";
/// What a constructor argument looks like.
const VALUE_EXPECTED: &str =
    "expected an argument value: a number, `true`, `false`, a string, a name like `relu`, or a tuple like `(3, 3)`";
/// How many levels a tensor expression (calls and lists) or an argument value (tuples) may nest, counting
/// the outermost as one; also the deepest chain of `@with` dependencies. Like rustc's default
/// `recursion_limit`: far beyond any real model, yet cheap on the stack even in an unoptimized build.
pub const MAX_NESTING: usize = 128;
/// How many groups (`(...)`, `[...]`, `{...}`) the tokens of an invocation may nest before they are parsed
/// at all: a backstop for the recursion in syn's token buffer, far above what [`MAX_NESTING`] lets through.
pub const MAX_TOKEN_DEPTH: usize = 1024;
/// What a layer constructor looks like.
const CTOR_EXPECTED: &str = "expected a layer constructor like `Dense(16, activation = relu)` or a model type like `VisionNet`";

/// Parses a `model!` invocation: one or more models.
///
/// Every syntax error is recorded in `diags`; the returned file holds the models and statements that
/// parsed (a statement with an error is left out, except one that only lacks its `;`).
pub fn parse(tokens: TokenStream, diags: &mut Diagnostics) -> File {
    parse_at(tokens, 0, diags)
}

/// [`parse`] of an invocation found `deps` levels deep in `@with` entries (whose tokens the scan of the
/// outermost invocation already covered).
fn parse_at(tokens: TokenStream, deps: usize, diags: &mut Diagnostics) -> File {
    if let Some(span) = (deps == 0).then(|| deeper_than(&tokens, MAX_TOKEN_DEPTH)).flatten() {
        diags.push(Diagnostic::new(
            span,
            format!(
                "these tokens nest more than {MAX_TOKEN_DEPTH} groups deep, more than modelc reads: \
                 bind intermediate tensors with `let`, like `let h = Dense(8)(x);`"
            ),
        ));
        return File::default();
    }
    let (file, outer) = parse_with_status(tokens, deps, diags);
    if let Err(e) = outer {
        // Only reachable if a nested group were left half-read: report it rather than lose it.
        diags.push_syn(e);
    }
    file
}

/// The span of the first group of `tokens` that lies more than `limit` groups deep (a group directly in
/// `tokens` is 1 deep), if any. Iterative, so any depth is scanned in constant stack.
fn deeper_than(tokens: &TokenStream, limit: usize) -> Option<Span> {
    let mut stack = vec![tokens.clone().into_iter()];
    while let Some(top) = stack.last_mut() {
        match top.next() {
            Some(TokenTree::Group(g)) => {
                if stack.len() > limit {
                    return Some(g.span_open());
                }
                stack.push(g.stream().into_iter());
            }
            Some(_) => {}
            None => {
                stack.pop();
            }
        }
    }
    None
}

/// [`parse`], also returning syn's own end-of-input check (always `Ok` when recovery works as intended).
fn parse_with_status(tokens: TokenStream, deps: usize, diags: &mut Diagnostics) -> (File, syn::Result<()>) {
    let mut file = File::default();
    let parser = |input: ParseStream| -> syn::Result<()> {
        parse_models(input, deps, &mut file, diags);
        Ok(())
    };
    let outer = parser.parse2(tokens);
    (file, outer)
}

/// `model+`, skipping models whose header is broken.
fn parse_models(input: ParseStream, deps: usize, file: &mut File, diags: &mut Diagnostics) {
    if input.is_empty() {
        diags.push(Diagnostic::new(input.span(), "expected a model definition like `pub struct Name { input x: [8]; ... }`"));
        return;
    }
    while !input.is_empty() {
        let start = input.cursor();
        if input.peek(Token![@]) {
            match parse_dep(input, deps + 1) {
                Ok(dep) => file.deps.push(dep),
                Err(e) => {
                    diags.push_syn(e);
                    skip_broken_header(input, start);
                }
            }
            continue;
        }
        match parse_model(input, diags) {
            Ok(model) => file.models.push(model),
            Err(e) => {
                diags.push_syn(e);
                skip_broken_header(input, start);
            }
        }
    }
}

/// `'@' 'with' '{' file '}' 'as' path ';'`: another invocation's source, handed back by its callback
/// macro. Its own syntax errors were reported where it is defined, so they are not repeated here.
/// `depth` counts the `@with` entries this one lies in, itself included.
fn parse_dep(input: ParseStream, depth: usize) -> syn::Result<Dep> {
    if depth > MAX_NESTING {
        return Err(input.error(format!(
            "models nest more than {MAX_NESTING} levels deep through other `model!` invocations: \
             use fewer levels of nested models"
        )));
    }
    input.parse::<Token![@]>()?;
    let with: Ident = input.parse()?;
    if with != "with" {
        return Err(syn::Error::new(with.span(), "expected `@with { ... } as path;` (written by modelc's own callbacks)"));
    }
    let full = input.peek(Ident) && input.fork().parse::<Ident>().is_ok_and(|i| i == "full");
    if full {
        input.parse::<Ident>()?;
    }
    let content;
    braced!(content in input);
    let inner: TokenStream = content.parse()?;
    input.parse::<Token![as]>()?;
    let path: syn::Path = input.call(syn::Path::parse_mod_style)?;
    input.parse::<Token![;]>()?;
    let mut ignored = Diagnostics::new();
    Ok(Dep { key: path_text(&path), file: parse_at(inner, depth, &mut ignored), full })
}

/// `outer-attr* vis 'struct' Ident '{' stmt* '}'`. An `Err` is a header error; statement errors are
/// recorded in `diags` and the model is still returned.
fn parse_model(input: ParseStream, diags: &mut Diagnostics) -> syn::Result<Model> {
    let attrs = parse_outer_attrs(input)?;
    let vis = parse_vis(input)?;
    if !input.peek(Token![struct]) {
        return Err(input.error("expected `struct`: a model is declared like `pub struct Name { ... }`"));
    }
    input.parse::<Token![struct]>()?;
    let name = parse_name(input, "the model's name after `struct`")?;
    if !input.peek(token::Brace) {
        return Err(input.error("expected `{` and the model's statements after the model's name"));
    }
    let content;
    braced!(content in input);
    let stmts = parse_stmts(&content, diags);
    Ok(Model { attrs, vis, name, stmts })
}

/// After a header error: skips to the end of the model's `{ ... }` body, or up to what looks like the
/// start of the next model. Consumes at least one token unless the header error already did.
fn skip_broken_header(input: ParseStream, start: Cursor) {
    if input.cursor() == start && !skip_token(input) {
        return;
    }
    while !input.is_empty() {
        if input.peek(token::Brace) {
            skip_token(input);
            return;
        }
        if input.peek(Token![#]) || input.peek(Token![pub]) || input.peek(Token![struct]) {
            return;
        }
        if !skip_token(input) {
            return;
        }
    }
}

/// Consumes one token tree; false when there was none.
fn skip_token(input: ParseStream) -> bool {
    input.parse::<TokenTree>().is_ok()
}

/// Outer attributes (doc comments included). Each is parsed on its own tokens so that a malformed
/// attribute gives exactly one error.
fn parse_outer_attrs(input: ParseStream) -> syn::Result<Vec<Attribute>> {
    let mut attrs = Vec::new();
    while input.peek(Token![#]) {
        let mut tokens = TokenStream::new();
        tokens.extend([input.parse::<TokenTree>()?]);
        if input.peek(Token![!]) {
            return Err(input.error("inner attributes `#![...]` are not allowed here: use `#[...]`"));
        }
        if !input.peek(token::Bracket) {
            return Err(input.error("expected `[` after `#`"));
        }
        let group = input.parse::<TokenTree>()?;
        if let TokenTree::Group(g) = &group {
            if let Some(span) = deeper_than(&g.stream(), MAX_NESTING) {
                return Err(syn::Error::new(
                    span,
                    format!("this attribute nests more than {MAX_NESTING} levels deep, more than modelc allows: simplify it"),
                ));
            }
        }
        tokens.extend([group]);
        attrs.extend(Attribute::parse_outer.parse2(tokens)?);
    }
    Ok(attrs)
}

/// `pub`, `pub(crate)`, `pub(in path)`, ... or nothing. Parsed on its own tokens, like attributes.
fn parse_vis(input: ParseStream) -> syn::Result<syn::Visibility> {
    if !input.peek(Token![pub]) {
        return Ok(syn::Visibility::Inherited);
    }
    let mut tokens = TokenStream::new();
    tokens.extend([input.parse::<TokenTree>()?]);
    if input.peek(token::Paren) {
        tokens.extend([input.parse::<TokenTree>()?]);
    }
    let parser = |vis: ParseStream| -> syn::Result<syn::Visibility> {
        let parsed = syn::Visibility::parse(vis)?;
        if !vis.is_empty() {
            return Err(vis.error("expected `crate`, `self`, `super` or `in path` inside `pub(...)`"));
        }
        Ok(parsed)
    };
    parser.parse2(tokens)
}

/// `stmt*` until the end of the body; each error is recorded and its statement skipped.
fn parse_stmts(input: ParseStream, diags: &mut Diagnostics) -> Vec<Stmt> {
    let mut stmts = Vec::new();
    while !input.is_empty() {
        let start = input.cursor();
        if reject_stmt_attrs(input, diags) {
            continue;
        }
        match parse_stmt(input) {
            Ok(stmt) => {
                stmts.push(stmt);
                if let Err(e) = expect_semi(input) {
                    diags.push_syn(e);
                    recover(input, start);
                }
            }
            Err(e) => {
                diags.push_syn(e);
                recover(input, start);
            }
        }
        if input.cursor() == start {
            // No progress is possible (cannot happen with balanced token trees); stop rather than loop.
            break;
        }
    }
    stmts
}

/// Reports and consumes `#[...]` (a doc comment, say) in front of a statement; true when it did.
fn reject_stmt_attrs(input: ParseStream, diags: &mut Diagnostics) -> bool {
    if !(input.peek(Token![#]) && input.peek2(token::Bracket)) {
        return false;
    }
    diags.push(Diagnostic::new(input.span(), "doc comments and attributes are not supported on statements: use a `//` comment"));
    skip_token(input) && skip_token(input)
}

/// After a statement error: skips to just after the next `;`, or to just before the next token that
/// clearly begins a statement. Consumes at least one token unless the failed statement already did.
fn recover(input: ParseStream, start: Cursor) {
    if input.cursor() == start && !skip_token(input) {
        return;
    }
    while !input.is_empty() {
        if input.peek(Token![;]) {
            skip_token(input);
            return;
        }
        if starts_stmt(input.cursor()) {
            return;
        }
        if !skip_token(input) {
            return;
        }
    }
}

/// True when `cursor` is at a statement keyword followed by what that statement needs next
/// (`input x`, `layer x`, `output x`, `let x`, `let (`).
fn starts_stmt(cursor: Cursor) -> bool {
    let Some((word, rest)) = cursor.ident() else {
        return false;
    };
    if word == "let" {
        rest.ident().is_some() || rest.group(Delimiter::Parenthesis).is_some()
    } else if word == "input" || word == "layer" || word == "output" {
        rest.ident().is_some()
    } else {
        false
    }
}

/// One statement, without its `;`.
fn parse_stmt(input: ParseStream) -> syn::Result<Stmt> {
    if input.peek(Token![let]) {
        return parse_let(input).map(Stmt::Let);
    }
    let word = input.cursor().ident().map(|(word, _)| word.to_string());
    match word.as_deref() {
        Some("input") => parse_input(input).map(Stmt::Input),
        Some("layer") => parse_layer(input).map(Stmt::Layer),
        Some("output") => parse_output(input).map(Stmt::Output),
        _ => Err(stmt_start_error(input)),
    }
}

/// The error for a statement that begins with something else than a statement keyword.
fn stmt_start_error(input: ParseStream) -> syn::Error {
    let base = "expected `input`, `layer`, `let` or `output`";
    let Some((word, rest)) = input.cursor().ident() else {
        return input.error(base);
    };
    let word = word.to_string();
    if let Some(keyword) = did_you_mean(&word, STMT_KEYWORDS) {
        return input.error(format!("{base}, found `{word}`: did you mean `{keyword}`?"));
    }
    if rest.punct().is_some_and(|(p, _)| p.as_char() == '=') {
        return input.error(format!("{base}, found `{word}`: bind a tensor with `let {word} = ...;`"));
    }
    input.error(format!("{base}, found `{word}`"))
}

/// The `;` ending a statement.
fn expect_semi(input: ParseStream) -> syn::Result<()> {
    if input.peek(Token![;]) {
        input.parse::<Token![;]>()?;
        return Ok(());
    }
    if input.peek(Token![+]) || input.peek(Token![-]) || input.peek(Token![*]) {
        return Err(input.error(
            "expected `;`: tensors are combined with merge layers, like `Add()([a, b])`, \
             `Subtract()([a, b])` or `Multiply()([a, b])`",
        ));
    }
    Err(input.error("expected `;` after the statement"))
}

/// `input name: [d1, d2, ...] (as dtype)?`
fn parse_input(input: ParseStream) -> syn::Result<InputDecl> {
    input.parse::<Ident>()?;
    let name = parse_name(input, "the input's name")?;
    if !input.peek(Token![:]) {
        return Err(input.error("expected `:` and a shape after the input's name, like `input x: [8];`"));
    }
    input.parse::<Token![:]>()?;
    if !input.peek(token::Bracket) {
        return Err(input.error(SHAPE_EXPECTED));
    }
    let content;
    let bracket = bracketed!(content in input);
    let shape_span = bracket.span.join();
    let dims = within(&content, |c| comma_separated(c, ']', parse_dim))?;
    if dims.is_empty() {
        return Err(syn::Error::new(shape_span, format!("{SHAPE_EXPECTED}: a shape needs at least one dimension")));
    }
    let dtype = if input.peek(Token![as]) {
        input.parse::<Token![as]>()?;
        Some(parse_dtype(input)?)
    } else {
        None
    };
    Ok(InputDecl { name, dims, shape_span, dtype })
}

/// One dimension: an integer literal, possibly negative (rejected later, by `resolve`).
fn parse_dim(input: ParseStream) -> syn::Result<Dim> {
    let minus = parse_minus(input)?;
    if !input.peek(LitInt) {
        return Err(input.error(SHAPE_EXPECTED));
    }
    let lit: LitInt = input.parse()?;
    let value = int_value(&lit, minus.is_some())?;
    Ok(Dim { value, span: with_minus(minus, lit.span()) })
}

/// The element type after `as`: `f32` or `i32`.
fn parse_dtype(input: ParseStream) -> syn::Result<Ident> {
    let expected = "expected `f32` or `i32` after `as`";
    if !input.peek(Ident) {
        return Err(input.error(expected));
    }
    let ty: Ident = input.parse()?;
    if ty == "f32" || ty == "i32" {
        Ok(ty)
    } else {
        Err(syn::Error::new(ty.span(), format!("{expected}, found `{ty}`: inputs are `f32` (the default) or `i32`")))
    }
}

/// `layer name = Ctor`
fn parse_layer(input: ParseStream) -> syn::Result<LayerDecl> {
    input.parse::<Ident>()?;
    let name = parse_name(input, "the layer's name")?;
    expect_eq(input, "and a layer constructor, like `layer enc = Dense(16);`")?;
    let ctor = parse_ctor(input)?;
    if input.peek(token::Paren) {
        return Err(input.error(format!("a `layer` declaration only creates the layer: call it in a `let`, like `let y = {name}(x);`")));
    }
    Ok(LayerDecl { name, ctor })
}

/// `let name = expr` or `let (a, b) = expr`
fn parse_let(input: ParseStream) -> syn::Result<LetStmt> {
    input.parse::<Token![let]>()?;
    let names = if input.peek(token::Paren) {
        let content;
        let paren = parenthesized!(content in input);
        let names = within(&content, |c| comma_separated(c, ')', |c| parse_name(c, "a tensor name")))?;
        if names.is_empty() {
            return Err(syn::Error::new(paren.span.join(), "expected at least one name in `(...)`, like `let (a, b) = ...;`"));
        }
        names
    } else {
        vec![parse_name(input, "a name or `(a, b)` after `let`")?]
    };
    expect_eq(input, "and a tensor expression")?;
    let expr = parse_expr(input, 1)?;
    Ok(LetStmt { names, expr })
}

/// `output name = expr` or `output name = expr as i32 target`
fn parse_output(input: ParseStream) -> syn::Result<OutputStmt> {
    input.parse::<Ident>()?;
    let name = parse_name(input, "the output's name")?;
    expect_eq(input, "and a tensor expression, like `output y = Dense(1)(x);`")?;
    let expr = parse_expr(input, 1)?;
    let target = if input.peek(Token![as]) {
        input.parse::<Token![as]>()?;
        Some(parse_target_dtype(input, &name)?)
    } else {
        None
    };
    Ok(OutputStmt { name, expr, target })
}

/// The `i32 target` (or `f32 target`) after an output's `as`.
fn parse_target_dtype(input: ParseStream, name: &Ident) -> syn::Result<Ident> {
    let expected = format!(
        "expected `i32 target` after `as`: integer class ids as the targets of `{name}` are declared `output {name} = ... as i32 target;`"
    );
    if !input.peek(Ident) {
        return Err(input.error(expected));
    }
    let ty: Ident = input.parse()?;
    if ty != "i32" && ty != "f32" {
        return Err(syn::Error::new(ty.span(), format!("{expected}, found `{ty}`")));
    }
    match input.fork().parse::<Ident>() {
        Ok(t) if t == "target" => {
            input.parse::<Ident>()?;
            Ok(ty)
        }
        _ => Err(input.error(format!(
            "expected `target` after `as {ty}`: an output is always f32, the type of its targets is declared `output {name} = ... as {ty} target;`"
        ))),
    }
}

/// A `=`, or an error saying what should follow it.
fn expect_eq(input: ParseStream, then: &str) -> syn::Result<()> {
    if !input.peek(Token![=]) {
        return Err(input.error(format!("expected `=` {then}")));
    }
    input.parse::<Token![=]>()?;
    Ok(())
}

/// A name (a non-keyword identifier); `what` says which name, for the error.
fn parse_name(input: ParseStream, what: &str) -> syn::Result<Ident> {
    if input.peek(Ident) {
        return input.parse();
    }
    match input.cursor().ident() {
        Some((keyword, _)) => Err(input.error(format!("expected {what}, found keyword `{keyword}`"))),
        None => Err(input.error(format!("expected {what}"))),
    }
}

/// `path ('(' args ')')?`
fn parse_ctor(input: ParseStream) -> syn::Result<Ctor> {
    if !starts_path(input) {
        return Err(input.error(CTOR_EXPECTED));
    }
    let path = syn::Path::parse_mod_style(input)?;
    let args = if input.peek(token::Paren) { Some(parse_args(input, 1)?) } else { None };
    Ok(Ctor { path, args })
}

/// True when a (module-style) path begins here.
fn starts_path(input: ParseStream) -> bool {
    input.peek(Ident)
        || input.peek(Token![::])
        || input.peek(Token![crate])
        || input.peek(Token![self])
        || input.peek(Token![super])
        || input.peek(Token![Self])
}

/// The path as a single plain identifier, if it is one.
fn single_ident(path: &syn::Path) -> Option<Ident> {
    if path.leading_colon.is_some() || path.segments.len() != 1 {
        return None;
    }
    let ident = &path.segments.first()?.ident;
    let keyword = ident == "crate" || ident == "self" || ident == "super" || ident == "Self";
    (!keyword).then(|| ident.clone())
}

/// The path as written, without spaces: `crate::m::VisionNet`.
pub fn path_text(path: &syn::Path) -> String {
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    let lead = if path.leading_colon.is_some() { "::" } else { "" };
    format!("{lead}{}", segments.join("::"))
}

/// `'(' args ')'` of a constructor called `depth` levels deep in a tensor expression (1 in a `layer`
/// declaration): its values are at that level, their tuples deeper.
fn parse_args(input: ParseStream, depth: usize) -> syn::Result<Args> {
    let content;
    let paren = parenthesized!(content in input);
    let items = within(&content, |c| comma_separated(c, ')', |c| parse_arg(c, depth)))?;
    Ok(Args { items, span: paren.span.join() })
}

/// `(Ident '=')? value`
fn parse_arg(input: ParseStream, depth: usize) -> syn::Result<Arg> {
    let key = if input.peek(Ident) && input.peek2(Token![=]) {
        let key: Ident = input.parse()?;
        input.parse::<Token![=]>()?;
        Some(key)
    } else {
        None
    };
    let value = parse_value(input, depth)?;
    Ok(Arg { key, value })
}

/// The error for a tensor expression or an argument value nested more than [`MAX_NESTING`] levels deep,
/// at the token that crosses the limit.
fn too_deeply_nested(input: ParseStream, what: &str) -> syn::Error {
    input.error(format!(
        "this {what} nests more than {MAX_NESTING} levels deep, more than modelc allows: \
         bind intermediate tensors with `let`, like `let h = Dense(8)(x);`, and use them by name"
    ))
}

/// An argument value, `depth` levels deep (counting nested expressions and tuples, itself included).
fn parse_value(input: ParseStream, depth: usize) -> syn::Result<ArgValue> {
    if depth > MAX_NESTING {
        return Err(too_deeply_nested(input, "argument value"));
    }
    if input.peek(Token![-]) {
        let minus = parse_minus(input)?;
        if input.peek(LitInt) {
            let lit: LitInt = input.parse()?;
            let value = int_value(&lit, true)?;
            return Ok(ArgValue { kind: ArgKind::Int(value), span: with_minus(minus, lit.span()) });
        }
        if input.peek(LitFloat) {
            let lit: LitFloat = input.parse()?;
            let value = float_value(&lit)?;
            return Ok(ArgValue { kind: ArgKind::Float(-value), span: with_minus(minus, lit.span()) });
        }
        return Err(input.error("expected a number after `-`"));
    }
    if input.peek(LitInt) {
        let lit: LitInt = input.parse()?;
        return Ok(ArgValue { kind: ArgKind::Int(int_value(&lit, false)?), span: lit.span() });
    }
    if input.peek(LitFloat) {
        let lit: LitFloat = input.parse()?;
        return Ok(ArgValue { kind: ArgKind::Float(float_value(&lit)?), span: lit.span() });
    }
    if input.peek(LitBool) {
        let lit: LitBool = input.parse()?;
        return Ok(ArgValue { kind: ArgKind::Bool(lit.value), span: lit.span });
    }
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        if !lit.suffix().is_empty() {
            return Err(syn::Error::new(lit.span(), format!("unexpected suffix `{}` on a string", lit.suffix())));
        }
        return Ok(ArgValue { kind: ArgKind::Str(lit.value()), span: lit.span() });
    }
    if input.peek(Ident) {
        let ident: Ident = input.parse()?;
        let span = ident.span();
        if input.peek(token::Paren) {
            let args = parse_args(input, depth + 1)?;
            let span = span.join(args.span).unwrap_or(span);
            // A layer given to a wrapper: `TimeDistributed(Dense(8))`, `Bidirectional(LSTM(32))`; any
            // other call is an object such as an initializer: `he_normal(seed = 3)`, `l2(1e-4)`.
            if crate::layers::KINDS.contains(&ident.to_string().as_str()) {
                let ctor = Ctor { path: syn::Path::from(ident), args: Some(args) };
                return Ok(ArgValue { kind: ArgKind::Layer(Box::new(ctor)), span });
            }
            return Ok(ArgValue { kind: ArgKind::Call(ident, args), span });
        }
        return Ok(ArgValue { kind: ArgKind::Ident(ident), span });
    }
    if input.peek(token::Paren) {
        let content;
        let paren = parenthesized!(content in input);
        let items = within(&content, |c| comma_separated(c, ')', |c| parse_value(c, depth + 1)))?;
        return Ok(ArgValue { kind: ArgKind::Tuple(items), span: paren.span.join() });
    }
    if input.peek(token::Bracket) {
        let content;
        let bracket = bracketed!(content in input);
        let items = within(&content, |c| comma_separated(c, ']', |c| parse_value(c, depth + 1)))?;
        return Ok(ArgValue { kind: ArgKind::Tuple(items), span: bracket.span.join() });
    }
    Err(input.error(VALUE_EXPECTED))
}

/// An optional `-`, returning its span.
fn parse_minus(input: ParseStream) -> syn::Result<Option<Span>> {
    if input.peek(Token![-]) {
        let minus: Token![-] = input.parse()?;
        Ok(Some(minus.span))
    } else {
        Ok(None)
    }
}

/// The span from the `-` (when there is one and spans can be joined) to the end of the literal.
fn with_minus(minus: Option<Span>, lit: Span) -> Span {
    minus.and_then(|m| m.join(lit)).unwrap_or(lit)
}

/// An integer literal's value, negated when `negative`; a suffix or an `i64` overflow is an error at the literal.
fn int_value(lit: &LitInt, negative: bool) -> syn::Result<i64> {
    if !lit.suffix().is_empty() {
        return Err(syn::Error::new(
            lit.span(),
            format!("unexpected suffix `{}`: write the plain number `{}`", lit.suffix(), lit.base10_digits()),
        ));
    }
    let sign = if negative { "-" } else { "" };
    let text = format!("{sign}{}", lit.base10_digits());
    text.parse::<i64>().map_err(|_| syn::Error::new(lit.span(), format!("integer `{text}` is out of range: it must fit in 64 bits (i64)")))
}

/// A float literal's value; a suffix or a non-finite value is an error at the literal.
fn float_value(lit: &LitFloat) -> syn::Result<f64> {
    if !lit.suffix().is_empty() {
        return Err(syn::Error::new(
            lit.span(),
            format!("unexpected suffix `{}`: write the plain number `{}`", lit.suffix(), lit.base10_digits()),
        ));
    }
    let value: f64 = lit.base10_parse()?;
    if !value.is_finite() {
        return Err(syn::Error::new(lit.span(), format!("number `{}` is out of range", lit.base10_digits())));
    }
    Ok(value)
}

/// A tensor expression, `depth` levels deep (the right-hand side of a statement is level 1; each call's
/// argument and each list element is one level deeper than the call or list).
fn parse_expr(input: ParseStream, depth: usize) -> syn::Result<Expr> {
    if depth > MAX_NESTING {
        return Err(too_deeply_nested(input, "expression"));
    }
    if input.peek(token::Bracket) {
        let content;
        let bracket = bracketed!(content in input);
        let items = within(&content, |c| comma_separated(c, ']', |c| parse_expr(c, depth + 1)))?;
        return Ok(Expr::List(ListExpr { items, span: bracket.span.join() }));
    }
    if !starts_path(input) {
        return Err(input.error(EXPR_EXPECTED));
    }
    let path = syn::Path::parse_mod_style(input)?;
    if !input.peek(token::Paren) {
        return match single_ident(&path) {
            Some(name) => Ok(Expr::Name(name)),
            None => {
                let ty = path_text(&path);
                Err(syn::Error::new_spanned(
                    &path,
                    format!(
                        "expected a tensor, found the layer type `{ty}`: create and call it with `{ty}()(x)`, \
                         or declare it with `layer name = {ty};` and call `name(x)`"
                    ),
                ))
            }
        };
    }
    if input.peek2(token::Paren) {
        // Two groups: an inline constructor and its call, `Dense(16)(x)`.
        let args = parse_args(input, depth)?;
        let ctor = Ctor { path, args: Some(args) };
        let (arg, paren_span) = parse_call_arg(input, depth)?;
        return Ok(Expr::Call(arg.into_call(Callee::Ctor(ctor), paren_span)));
    }
    // One group: a call of a declared layer instance, `enc(x)`.
    let Some(name) = single_ident(&path) else {
        let ty = path_text(&path);
        return Err(syn::Error::new_spanned(
            &path,
            format!(
                "`{ty}(...)` needs a second pair of parentheses holding the tensor to call it on, like \
                 `{ty}()(x)`; a layer instance declared with `layer` is called by its plain name, like `enc(x)`"
            ),
        ));
    };
    let looks_like_type = name.to_string().starts_with(|c: char| c.is_ascii_uppercase());
    let (arg, paren_span) = parse_call_arg(input, depth).map_err(|e| {
        if looks_like_type {
            // `Dense(16)` alone: the arguments were read as the tensor of an instance call.
            syn::Error::new(
                e.span(),
                format!(
                    "`{name}(...)` needs a second pair of parentheses holding the tensor to call it on, \
                     like `{name}(...)(x)`; or declare it with `layer name = {name}(...);` and call `name(x)`"
                ),
            )
        } else {
            e
        }
    })?;
    Ok(Expr::Call(arg.into_call(Callee::Instance(name), paren_span)))
}

/// The arguments of a layer call: positional tensors, then keyword arguments.
struct CallArgs {
    positional: Vec<Expr>,
    keywords: Vec<CallKeyword>,
}

impl CallArgs {
    fn into_call(self, callee: Callee, paren_span: Span) -> CallExpr {
        let mut positional = self.positional.into_iter();
        let first = positional.next().unwrap_or(Expr::List(ListExpr { items: Vec::new(), span: paren_span }));
        CallExpr { callee, arg: Box::new(first), more: positional.collect(), keywords: self.keywords, paren_span }
    }
}

/// One call-time keyword argument: `key = tensor` or `key = literal`.
fn parse_call_keyword(input: ParseStream, depth: usize) -> syn::Result<CallKeyword> {
    let key: Ident = input.parse()?;
    input.parse::<Token![=]>()?;
    let literal = input.peek(LitBool) || input.peek(LitInt) || input.peek(LitFloat) || input.peek(LitStr) || input.peek(Token![-]);
    let value = if literal { CallValue::Literal(parse_value(input, depth + 1)?) } else { CallValue::Tensor(parse_expr(input, depth + 1)?) };
    Ok(CallKeyword { key, value })
}

/// `'(' expr (',' expr)* (',' key '=' value)* ')'`: the arguments of a layer call `depth` levels deep
/// (one tensor, a list, or Keras' several positional tensors and call-time keywords), and the span of
/// its parentheses.
fn parse_call_arg(input: ParseStream, depth: usize) -> syn::Result<(CallArgs, Span)> {
    let content;
    let paren = parenthesized!(content in input);
    let args = within(&content, |c| {
        if c.is_empty() {
            return Err(c.error("expected the tensor to call the layer on, like `(x)` or `([a, b])`"));
        }
        let mut args = CallArgs { positional: Vec::new(), keywords: Vec::new() };
        for item in comma_separated(c, ')', |c| {
            if c.peek(Ident) && c.peek2(Token![=]) {
                parse_call_keyword(c, depth).map(Err)
            } else {
                parse_expr(c, depth + 1).map(Ok)
            }
        })? {
            match item {
                Ok(e) if args.keywords.is_empty() => args.positional.push(e),
                Ok(e) => return Err(syn::Error::new(e.span(), "a positional tensor cannot follow a keyword argument: put it before them")),
                Err(k) => args.keywords.push(k),
            }
        }
        if args.positional.is_empty() {
            return Err(c.error("expected the tensor to call the layer on before the keyword arguments, like `(x, mask = m)`"));
        }
        Ok(args)
    })?;
    Ok((args, paren.span.join()))
}

/// `(item (',' item)* ','?)?` up to the end of `input`, a group's content closed by `close`.
fn comma_separated<T>(input: ParseStream, close: char, mut item: impl FnMut(ParseStream) -> syn::Result<T>) -> syn::Result<Vec<T>> {
    let mut items = Vec::new();
    while !input.is_empty() {
        items.push(item(input)?);
        if input.is_empty() {
            break;
        }
        if !input.peek(Token![,]) {
            return Err(input.error(format!("expected `,` or `{close}`")));
        }
        input.parse::<Token![,]>()?;
    }
    Ok(items)
}

/// Runs `f` on a group's content, then consumes whatever `f` left, error or not: syn reports a group
/// dropped half-read as a second, vaguer error at the end of the whole parse.
fn within<T>(content: &ParseBuffer, f: impl FnOnce(ParseStream) -> syn::Result<T>) -> syn::Result<T> {
    let result = f(content).and_then(|value| {
        if content.is_empty() {
            Ok(value)
        } else {
            Err(content.error("unexpected tokens before the closing delimiter"))
        }
    });
    while !content.is_empty() {
        if !skip_token(content) {
            break;
        }
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn tokens(src: &str) -> TokenStream {
        TokenStream::from_str(src).unwrap()
    }

    /// Parses `src`, asserting that syn's own end check never fires (recovery consumed every group).
    fn parse_src(src: &str) -> (File, Diagnostics) {
        let mut diags = Diagnostics::new();
        let (file, outer) = parse_with_status(tokens(src), 0, &mut diags);
        assert!(outer.is_ok(), "syn's end-of-input check fired: {:?}", outer.err().map(|e| e.to_string()));
        (file, diags)
    }

    /// Parses `src`, which must be free of errors.
    fn parse_ok(src: &str) -> File {
        let (file, diags) = parse_src(src);
        let msgs: Vec<_> = diags.items().iter().map(|d| d.message.clone()).collect();
        assert!(msgs.is_empty(), "unexpected errors: {msgs:?}");
        file
    }

    /// Parses one error-free model and returns its statements.
    fn stmts(body: &str) -> Vec<Stmt> {
        let mut file = parse_ok(&format!("struct M {{ {body} }}"));
        assert_eq!(file.models.len(), 1);
        file.models.remove(0).stmts
    }

    /// The errors of `src` as `(line, column, message)`, line and column 1-based.
    fn errors(src: &str) -> Vec<(usize, usize, String)> {
        let (_, diags) = parse_src(src);
        diags
            .items()
            .iter()
            .map(|d| {
                let at = d.span.start();
                (at.line, at.column + 1, d.message.clone())
            })
            .collect()
    }

    /// `(line, column)` of a span's start, 1-based.
    fn loc(span: Span) -> (usize, usize) {
        (span.start().line, span.start().column + 1)
    }

    /// `(line, column)` of a span's end, 1-based (the column just past the last character).
    fn end(span: Span) -> (usize, usize) {
        (span.end().line, span.end().column + 1)
    }

    /// A compact rendering of a value, for assertions.
    fn show_value(v: &ArgValue) -> String {
        match &v.kind {
            ArgKind::Int(i) => i.to_string(),
            ArgKind::Float(f) => format!("{f:?}"),
            ArgKind::Bool(b) => b.to_string(),
            ArgKind::Str(s) => format!("{s:?}"),
            ArgKind::Ident(i) => i.to_string(),
            ArgKind::Tuple(items) => {
                format!("({})", items.iter().map(show_value).collect::<Vec<_>>().join(", "))
            }
            ArgKind::Call(name, args) => {
                let items: Vec<String> = args
                    .items
                    .iter()
                    .map(|arg| match &arg.key {
                        Some(k) => format!("{k} = {}", show_value(&arg.value)),
                        None => show_value(&arg.value),
                    })
                    .collect();
                format!("{name}({})", items.join(", "))
            }
            ArgKind::Layer(c) => show_ctor(c),
        }
    }

    /// A compact rendering of a constructor, for assertions.
    fn show_ctor(c: &Ctor) -> String {
        let args = c.args.as_ref().map(|a| {
            let items: Vec<String> = a
                .items
                .iter()
                .map(|arg| match &arg.key {
                    Some(k) => format!("{k} = {}", show_value(&arg.value)),
                    None => show_value(&arg.value),
                })
                .collect();
            format!("({})", items.join(", "))
        });
        format!("{}{}", path_text(&c.path), args.unwrap_or_default())
    }

    /// A compact rendering of an expression, for assertions.
    fn show_expr(e: &Expr) -> String {
        match e {
            Expr::Name(n) => n.to_string(),
            Expr::List(l) => format!("[{}]", l.items.iter().map(show_expr).collect::<Vec<_>>().join(", ")),
            Expr::Call(c) => {
                let more: String = c.more.iter().map(|e| format!(", {}", show_expr(e))).collect();
                let kw: String = c
                    .keywords
                    .iter()
                    .map(|k| match &k.value {
                        CallValue::Tensor(e) => format!(", {} = {}", k.key, show_expr(e)),
                        CallValue::Literal(v) => format!(", {} = {}", k.key, show_value(v)),
                    })
                    .collect();
                match &c.callee {
                    Callee::Instance(i) => format!("{i}<inst>({}{more}{kw})", show_expr(&c.arg)),
                    Callee::Ctor(ctor) => format!("{}({}{more}{kw})", show_ctor(ctor), show_expr(&c.arg)),
                }
            }
        }
    }

    /// A compact rendering of a statement, for assertions.
    fn show_stmt(s: &Stmt) -> String {
        match s {
            Stmt::Input(i) => {
                let dims: Vec<String> = i.dims.iter().map(|d| d.value.to_string()).collect();
                let dtype = i.dtype.as_ref().map(|t| format!(" as {t}")).unwrap_or_default();
                format!("input {}: [{}]{dtype}", i.name, dims.join(", "))
            }
            Stmt::Layer(l) => format!("layer {} = {}", l.name, show_ctor(&l.ctor)),
            Stmt::Let(l) => {
                let names: Vec<String> = l.names.iter().map(Ident::to_string).collect();
                let pat = if names.len() == 1 { names.join("") } else { format!("({})", names.join(", ")) };
                format!("let {pat} = {}", show_expr(&l.expr))
            }
            Stmt::Output(o) => match &o.target {
                Some(t) => format!("output {} = {} as {t} target", o.name, show_expr(&o.expr)),
                None => format!("output {} = {}", o.name, show_expr(&o.expr)),
            },
        }
    }

    fn show_all(body: &str) -> Vec<String> {
        stmts(body).iter().map(show_stmt).collect()
    }

    #[test]
    fn parses_several_results_call_arguments_and_wrapped_layers() {
        let file = parse_ok(
            "struct S {
                 input x: [5, 3];
                 let (y, h, c) = LSTM(4, return_state = true)(x);
                 let d = LSTM(4)(x, initial_state = [h, c],);
                 output z = Bidirectional(GRU(2, return_sequences = true), merge_mode = sum)(d, initial_state = [h, enc(c)]);
                 output a = mha(d, y, attention_mask = m, use_causal_mask = true);
             }",
        );
        let shown: Vec<String> = file.models[0].stmts.iter().map(show_stmt).collect();
        assert_eq!(
            shown,
            [
                "input x: [5, 3]",
                "let (y, h, c) = LSTM(4, return_state = true)(x)",
                "let d = LSTM(4)(x, initial_state = [h, c])",
                "output z = Bidirectional(GRU(2, return_sequences = true), merge_mode = sum)(d, initial_state = [h, enc<inst>(c)])",
                "output a = mha<inst>(d, y, attention_mask = m, use_causal_mask = true)",
            ]
        );
    }

    #[test]
    fn parses_the_fusion_example() {
        let file = parse_ok(
            "/// Fuses two feature sources into one score.
             pub struct Fusion {
                 input left_features: [8];
                 input right_features: [4];
                 let left = Dense(16, activation = relu)(left_features);
                 let left = Dense(8, activation = relu)(left);
                 let right = Dense(8, activation = relu)(right_features);
                 let merged = Concatenate()([left, right]);
                 output score = Dense(1, activation = sigmoid)(merged);
             }",
        );
        assert_eq!(file.models.len(), 1);
        let model = &file.models[0];
        assert_eq!(model.name, "Fusion");
        assert!(matches!(model.vis, syn::Visibility::Public(_)));
        assert_eq!(model.attrs.len(), 1);
        assert!(model.attrs[0].path().is_ident("doc"));
        let shown: Vec<String> = model.stmts.iter().map(show_stmt).collect();
        assert_eq!(
            shown,
            [
                "input left_features: [8]",
                "input right_features: [4]",
                "let left = Dense(16, activation = relu)(left_features)",
                "let left = Dense(8, activation = relu)(left)",
                "let right = Dense(8, activation = relu)(right_features)",
                "let merged = Concatenate()([left, right])",
                "output score = Dense(1, activation = sigmoid)(merged)",
            ]
        );
    }

    #[test]
    fn parses_inputs() {
        assert_eq!(
            show_all("input a: [8]; input b: [32, 32, 3,]; input c: [4] as i32; input d: [0, -1] as f32;"),
            ["input a: [8]", "input b: [32, 32, 3]", "input c: [4] as i32", "input d: [0, -1] as f32"]
        );
    }

    #[test]
    fn input_spans_point_at_the_shape_and_literals() {
        let s = stmts("input image: [32, -3] as i32;");
        let Stmt::Input(i) = &s[0] else { panic!("not an input") };
        assert_eq!(loc(i.name.span()), (1, 18));
        assert_eq!(loc(i.shape_span), (1, 25));
        assert_eq!(end(i.shape_span), (1, 33));
        assert_eq!(loc(i.dims[0].span), (1, 26));
        assert_eq!(loc(i.dims[1].span), (1, 30), "the span of a negative dimension starts at its `-`");
        assert_eq!(end(i.dims[1].span), (1, 32));
        assert_eq!(loc(i.dtype.as_ref().unwrap().span()), (1, 37));
    }

    #[test]
    fn parses_layer_constructors() {
        assert_eq!(
            show_all(
                "layer a = Dense(16, activation = relu);
                 layer b = VisionNet;
                 layer c = crate::m::VisionNet;
                 layer d = VisionNet(trainable = false);
                 layer e = ::models::Meta();
                 layer f = Conv2D(8, (3, 3), strides = [1, 1,], padding = \"same\",);"
            ),
            [
                "layer a = Dense(16, activation = relu)",
                "layer b = VisionNet",
                "layer c = crate::m::VisionNet",
                "layer d = VisionNet(trainable = false)",
                "layer e = ::models::Meta()",
                "layer f = Conv2D(8, (3, 3), strides = (1, 1), padding = \"same\")",
            ]
        );
        let s = stmts("layer b = VisionNet;");
        let Stmt::Layer(l) = &s[0] else { panic!("not a layer") };
        assert!(l.ctor.args.is_none(), "no parentheses, no arguments");
    }

    #[test]
    fn parses_every_kind_of_value() {
        let s = stmts("layer l = X(1, -2, 0.5, -1e-3, 1_000, 0x10, true, false, \"s\", None, (), (1,), [2, [3]], (-4, x));");
        let Stmt::Layer(l) = &s[0] else { panic!("not a layer") };
        let values: Vec<String> = l.ctor.args.as_ref().unwrap().items.iter().map(|a| show_value(&a.value)).collect();
        assert_eq!(
            values,
            ["1", "-2", "0.5", "-0.001", "1000", "16", "true", "false", "\"s\"", "None", "()", "(1)", "(2, (3))", "(-4, x)"]
        );
    }

    #[test]
    fn value_and_args_spans() {
        let s = stmts("layer l = Dropout(rate = -0.5);");
        let Stmt::Layer(l) = &s[0] else { panic!("not a layer") };
        let args = l.ctor.args.as_ref().unwrap();
        assert_eq!(loc(args.span), (1, 29));
        assert_eq!(end(args.span), (1, 42));
        let arg = &args.items[0];
        assert_eq!(arg.key.as_ref().unwrap(), "rate");
        assert_eq!(loc(arg.value.span), (1, 37));
        assert_eq!(end(arg.value.span), (1, 41));
        assert_eq!(loc(l.ctor.span()), (1, 22));
    }

    #[test]
    fn parses_lets_and_outputs() {
        assert_eq!(
            show_all(
                "let h = x;
                 let (a, b) = split(h);
                 let (c,) = one(h);
                 let (d, e,) = two(h);
                 let m = Concatenate(axis = -1)([enc(a), Dense(2)(b), [c, d]]);
                 output y = Dense(1)(Add()([m, e]));
                 output z = enc(Dense(3)(x));"
            ),
            [
                "let h = x",
                "let (a, b) = split<inst>(h)",
                "let c = one<inst>(h)",
                "let (d, e) = two<inst>(h)",
                "let m = Concatenate(axis = -1)([enc<inst>(a), Dense(2)(b), [c, d]])",
                "output y = Dense(1)(Add()([m, e]))",
                "output z = enc<inst>(Dense(3)(x))",
            ]
        );
        let s = stmts("let (c,) = one(h);");
        let Stmt::Let(l) = &s[0] else { panic!("not a let") };
        assert_eq!(l.names.len(), 1);
    }

    #[test]
    fn parses_paths_as_inline_constructors() {
        assert_eq!(
            show_all("let v = crate::nets::VisionNet()(x); let w = VisionNet(trainable = false)(x);"),
            ["let v = crate::nets::VisionNet()(x)", "let w = VisionNet(trainable = false)(x)"]
        );
    }

    #[test]
    fn expression_spans() {
        let s = stmts("let m = Concatenate()([a, b]);\nlet e = enc(m);");
        let Stmt::Let(l) = &s[0] else { panic!("not a let") };
        let Expr::Call(call) = &l.expr else { panic!("not a call") };
        assert_eq!(loc(l.expr.span()), (1, 20));
        assert_eq!(loc(call.paren_span), (1, 33));
        assert_eq!(end(call.paren_span), (1, 41));
        let Expr::List(list) = &*call.arg else { panic!("not a list") };
        assert_eq!(loc(list.span), (1, 34));
        assert_eq!(end(list.span), (1, 40));
        let Stmt::Let(l) = &s[1] else { panic!("not a let") };
        assert_eq!(loc(l.expr.span()), (2, 9));
    }

    #[test]
    fn parses_attributes_visibility_and_several_models() {
        let file = parse_ok(
            "/// First.
             #[allow(dead_code)]
             pub(crate) struct A { input x: [1]; output y = Dense(1)(x); }
             struct B {}
             pub(in crate::m) struct C { input z: [2]; }",
        );
        let names: Vec<String> = file.models.iter().map(|m| m.name.to_string()).collect();
        assert_eq!(names, ["A", "B", "C"]);
        assert_eq!(file.models[0].attrs.len(), 2);
        assert!(matches!(file.models[0].vis, syn::Visibility::Restricted(_)));
        assert!(matches!(file.models[1].vis, syn::Visibility::Inherited));
        assert!(file.models[1].stmts.is_empty());
        assert_eq!(file.models[2].stmts.len(), 1);
    }

    #[test]
    fn statement_words_are_plain_identifiers() {
        assert_eq!(
            show_all("input input: [1]; layer layer = Dense(1); let output = layer(input); output out = output;"),
            ["input input: [1]", "layer layer = Dense(1)", "let output = layer<inst>(input)", "output out = output"]
        );
    }

    // ---- errors -------------------------------------------------------------------------------------

    fn one_error(src: &str) -> (usize, usize, String) {
        let errs = errors(src);
        assert_eq!(errs.len(), 1, "expected exactly one error, got {errs:?}");
        errs.into_iter().next().unwrap()
    }

    #[test]
    fn empty_invocation_is_an_error() {
        let (_, _, msg) = one_error("");
        assert!(msg.starts_with("expected a model definition"), "{msg}");
    }

    #[test]
    fn unknown_statement_word() {
        let (l, c, msg) = one_error("struct M {\n    inptu x: [8];\n}");
        assert_eq!((l, c), (2, 5));
        assert_eq!(msg, "expected `input`, `layer`, `let` or `output`, found `inptu`: did you mean `input`?");
        let (l, c, msg) = one_error("struct M { x = Dense(1)(y); }");
        assert_eq!((l, c), (1, 12));
        assert_eq!(msg, "expected `input`, `layer`, `let` or `output`, found `x`: bind a tensor with `let x = ...;`");
        let (l, c, msg) = one_error("struct M { 5; }");
        assert_eq!((l, c), (1, 12));
        assert_eq!(msg, "expected `input`, `layer`, `let` or `output`");
    }

    #[test]
    fn shape_errors() {
        let (l, c, msg) = one_error("struct M {\n input x: 8;\n}");
        assert_eq!((l, c), (2, 11));
        assert!(msg.starts_with("expected a shape like `[8]` or `[32, 32, 3]`"), "{msg}");
        let (l, c, msg) = one_error("struct M { input x: [8, a]; }");
        assert_eq!((l, c), (1, 25));
        assert!(msg.starts_with("expected a shape like `[8]`"), "{msg}");
        let (l, c, msg) = one_error("struct M { input x: [8.5]; }");
        assert_eq!((l, c), (1, 22));
        assert!(msg.starts_with("expected a shape like `[8]`"), "{msg}");
        let (l, c, msg) = one_error("struct M { input x: [8 8]; }");
        assert_eq!((l, c), (1, 24));
        assert_eq!(msg, "expected `,` or `]`");
        let (l, c, msg) = one_error("struct M { input x: []; }");
        assert_eq!((l, c), (1, 21));
        assert!(msg.ends_with("a shape needs at least one dimension"), "{msg}");
        let (l, c, msg) = one_error("struct M { input x [8]; }");
        assert_eq!((l, c), (1, 20));
        assert!(msg.starts_with("expected `:` and a shape"), "{msg}");
    }

    #[test]
    fn integer_overflow_is_reported_at_the_literal() {
        let (l, c, msg) = one_error("struct M { input x: [1, 99999999999999999999]; }");
        assert_eq!((l, c), (1, 25));
        assert_eq!(msg, "integer `99999999999999999999` is out of range: it must fit in 64 bits (i64)");
        let (_, _, msg) = one_error("struct M { layer d = D(-9223372036854775809); }");
        assert!(msg.starts_with("integer `-9223372036854775809` is out of range"), "{msg}");
        let s = stmts("layer d = D(-9223372036854775808);");
        let Stmt::Layer(l) = &s[0] else { panic!("not a layer") };
        assert!(matches!(l.ctor.args.as_ref().unwrap().items[0].value.kind, ArgKind::Int(i64::MIN)));
    }

    #[test]
    fn literal_suffixes_are_rejected() {
        let (l, c, msg) = one_error("struct M { input x: [8usize]; }");
        assert_eq!((l, c), (1, 22));
        assert_eq!(msg, "unexpected suffix `usize`: write the plain number `8`");
        let (_, _, msg) = one_error("struct M { layer d = Dropout(0.5f32); }");
        assert_eq!(msg, "unexpected suffix `f32`: write the plain number `0.5`");
    }

    #[test]
    fn dtype_errors() {
        let (l, c, msg) = one_error("struct M { input x: [8] as f64; }");
        assert_eq!((l, c), (1, 28));
        assert_eq!(msg, "expected `f32` or `i32` after `as`, found `f64`: inputs are `f32` (the default) or `i32`");
        let (l, c, msg) = one_error("struct M { input x: [8] as; }");
        assert_eq!((l, c), (1, 27));
        assert_eq!(msg, "expected `f32` or `i32` after `as`");
    }

    #[test]
    fn output_target_types() {
        assert_eq!(
            show_all("output y = Dense(3)(x) as i32 target; output z = x as f32 target; output w = x;"),
            ["output y = Dense(3)(x) as i32 target", "output z = x as f32 target", "output w = x"]
        );
        let (l, c, msg) = one_error("struct M { output y = x as i32; }");
        assert_eq!((l, c), (1, 31));
        assert_eq!(
            msg,
            "expected `target` after `as i32`: an output is always f32, the type of its targets is declared `output y = ... as i32 target;`"
        );
        let (l, c, msg) = one_error("struct M { output y = x as u8 target; }");
        assert_eq!((l, c), (1, 28));
        assert!(msg.starts_with("expected `i32 target` after `as`") && msg.ends_with("found `u8`"), "{msg}");
    }

    #[test]
    fn name_errors() {
        let (l, c, msg) = one_error("struct M { let mut x = y; }");
        assert_eq!((l, c), (1, 16));
        assert_eq!(msg, "expected a name or `(a, b)` after `let`, found keyword `mut`");
        let (l, c, msg) = one_error("struct M { let () = y; }");
        assert_eq!((l, c), (1, 16));
        assert!(msg.starts_with("expected at least one name"), "{msg}");
        let (l, c, msg) = one_error("struct M { output = y; }");
        assert_eq!((l, c), (1, 19));
        assert_eq!(msg, "expected the output's name");
        let (l, c, msg) = one_error("struct M { layer d Dense(1); }");
        assert_eq!((l, c), (1, 20));
        assert!(msg.starts_with("expected `=` and a layer constructor"), "{msg}");
    }

    #[test]
    fn argument_errors() {
        let (l, c, msg) = one_error("struct M { layer d = Dense(16, activation = ); }");
        assert_eq!((l, c), (1, 45));
        assert!(msg.contains("expected an argument value"), "{msg}");
        let (l, c, msg) = one_error("struct M { layer d = Dense(16 32); }");
        assert_eq!((l, c), (1, 31));
        assert_eq!(msg, "expected `,` or `)`");
        let (l, c, msg) = one_error("struct M { layer d = Dense(-relu); }");
        assert_eq!((l, c), (1, 29));
        assert_eq!(msg, "expected a number after `-`");
        let (l, c, msg) = one_error("struct M { layer d = 16; }");
        assert_eq!((l, c), (1, 22));
        assert!(msg.starts_with("expected a layer constructor"), "{msg}");
        let (l, c, msg) = one_error("struct M { layer d = Dense(1)(x); }");
        assert_eq!((l, c), (1, 30));
        assert_eq!(msg, "a `layer` declaration only creates the layer: call it in a `let`, like `let y = d(x);`");
    }

    #[test]
    fn call_errors() {
        // Several tensors parse (Keras' `mha(query, value)`): the layer decides in `resolve`.
        let (file, _) = parse_src("struct M { let y = enc(a, b, mask = m, causal = true); }");
        let crate::ast::Stmt::Let(l) = &file.models[0].stmts[0] else { panic!("not a let") };
        let Expr::Call(call) = &l.expr else { panic!("not a call") };
        assert_eq!((call.more.len(), call.keywords.len()), (1, 2));
        assert!(matches!(call.keywords[1].value, CallValue::Literal(_)));
        let (l, c, msg) = one_error("struct M { let y = enc(mask = m, a); }");
        assert_eq!((l, c), (1, 34));
        assert!(msg.starts_with("a positional tensor cannot follow a keyword argument"), "{msg}");
        let (l, c, msg) = one_error("struct M { let y = enc(); }");
        assert_eq!((l, c), (1, 24));
        assert!(msg.contains("expected the tensor to call the layer on"), "{msg}");
        let (l, c, msg) = one_error("struct M { let y = Dense(16); }");
        assert_eq!((l, c), (1, 26));
        assert!(msg.starts_with("`Dense(...)` needs a second pair of parentheses"), "{msg}");
        let (l, c, msg) = one_error("struct M { let y = crate::Net(x); }");
        assert_eq!((l, c), (1, 20));
        assert!(msg.starts_with("`crate::Net(...)` needs a second pair of parentheses"), "{msg}");
        let (l, c, msg) = one_error("struct M { let y = crate::Net; }");
        assert_eq!((l, c), (1, 20));
        assert!(msg.starts_with("expected a tensor, found the layer type `crate::Net`"), "{msg}");
        let (l, c, msg) = one_error("struct M { let y = 3; }");
        assert_eq!((l, c), (1, 20));
        assert!(msg.starts_with("expected a tensor"), "{msg}");
        let (l, c, msg) = one_error("struct M { let y = a + b; }");
        assert_eq!((l, c), (1, 22));
        assert!(msg.contains("`Add()([a, b])`"), "{msg}");
        let (l, c, msg) = one_error("struct M { let y = [a b]; }");
        assert_eq!((l, c), (1, 23));
        assert_eq!(msg, "expected `,` or `]`");
    }

    #[test]
    fn missing_semicolon_keeps_the_statement_and_the_next_one() {
        let src = "struct M {\n let a = enc(x)\n let b = enc(a);\n output y = b;\n}";
        let errs = errors(src);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!((errs[0].0, errs[0].1), (3, 2));
        assert_eq!(errs[0].2, "expected `;` after the statement");
        let (file, _) = parse_src(src);
        let shown: Vec<String> = file.models[0].stmts.iter().map(show_stmt).collect();
        assert_eq!(shown, ["let a = enc<inst>(x)", "let b = enc<inst>(a)", "output y = b"]);
    }

    #[test]
    fn every_error_of_a_model_is_reported() {
        let src = "pub struct M {
    input a: [8 4];
    input b: [4] as u8;
    let c = Dense(16 activation = relu)(a);
    layer enc = Dense(8);
    lett d = enc(b);
    let e = Concatenate()([c, enc(b)]);
    output y = Dense(1)(e, a);
    output z = e;
}";
        let errs = errors(src);
        let at: Vec<(usize, usize)> = errs.iter().map(|e| (e.0, e.1)).collect();
        assert_eq!(at, [(2, 17), (3, 21), (4, 22), (6, 5)], "{errs:?}");
        let (file, _) = parse_src(src);
        let shown: Vec<String> = file.models[0].stmts.iter().map(show_stmt).collect();
        assert_eq!(
            shown,
            ["layer enc = Dense(8)", "let e = Concatenate()([c, enc<inst>(b)])", "output y = Dense(1)(e, a)", "output z = e"]
        );
    }

    #[test]
    fn errors_in_nested_groups_do_not_cascade() {
        let errs = errors("struct M { let y = Concatenate(axis = (1, ))([a, Dense(2)(b c), d]); output z = y; }");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!((errs[0].0, errs[0].1), (1, 61));
    }

    #[test]
    fn broken_header_skips_the_model_only() {
        let src = "pub struct {\n input x: [8];\n}\npub struct B { input y: [1]; }";
        let errs = errors(src);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!((errs[0].0, errs[0].1), (1, 12));
        assert_eq!(errs[0].2, "expected the model's name after `struct`");
        let (file, _) = parse_src(src);
        assert_eq!(file.models.len(), 1);
        assert_eq!(file.models[0].name, "B");
    }

    #[test]
    fn header_errors() {
        let (l, c, msg) = one_error("pub fn f() {}");
        assert_eq!((l, c), (1, 5));
        assert!(msg.starts_with("expected `struct`"), "{msg}");
        let (l, c, msg) = one_error("struct M<T> { }");
        assert_eq!((l, c), (1, 9));
        assert!(msg.starts_with("expected `{`"), "{msg}");
        let (l, c, msg) = one_error("struct M;");
        assert_eq!((l, c), (1, 9));
        assert!(msg.starts_with("expected `{`"), "{msg}");
        let (l, c, msg) = one_error("pub(foo) struct M {}");
        assert_eq!((l, c), (1, 4));
        assert!(msg.contains("inside `pub(...)`"), "{msg}");
        let (l, c, msg) = one_error("#![allow(x)] struct M {}");
        assert_eq!((l, c), (1, 2));
        assert!(msg.starts_with("inner attributes"), "{msg}");
        // Garbage before a model: reported once, the model is still parsed.
        let (file, diags) = parse_src("garbage here struct A { input x: [1]; }");
        assert_eq!(diags.len(), 1);
        assert_eq!(file.models.len(), 1);
        let (file, diags) = parse_src("#[doc = ] struct A { input x: [1]; }");
        assert_eq!(diags.len(), 1);
        assert_eq!(file.models.len(), 1);
    }

    #[test]
    fn doc_comments_on_statements_are_reported_but_the_statement_is_kept() {
        let (file, diags) = parse_src("struct M {\n /// the input\n input x: [1];\n}");
        assert_eq!(diags.len(), 1);
        let d = &diags.items()[0];
        assert_eq!(loc(d.span), (2, 2));
        assert!(d.message.starts_with("doc comments and attributes are not supported on statements"));
        assert_eq!(file.models[0].stmts.len(), 1);
    }

    // ---- robustness ---------------------------------------------------------------------------------

    include!("../tests/common/xorshift.rs");

    const VOCAB: &[&str] = &[
        "input",
        "layer",
        "let",
        "output",
        "struct",
        "pub",
        "as",
        "i32",
        "f64",
        "x",
        "y",
        "Dense",
        "enc",
        "crate",
        "mut",
        "true",
        "None",
        ":",
        ";",
        "=",
        "==",
        ",",
        "::",
        "-",
        "+",
        "#",
        "!",
        ".",
        "8",
        "-1",
        "0.5",
        "1e9",
        "99999999999999999999",
        "3u8",
        "\"s\"",
        "'c'",
        "b\"x\"",
        "_",
        "r#type",
        "relu",
    ];

    /// Random balanced tokens: words from `VOCAB` and nested groups.
    fn random_tokens(rng: &mut Rng, out: &mut String, depth: usize, len: usize) {
        for _ in 0..len {
            match rng.below(10) {
                0 if depth < 4 => {
                    let (open, close) = [("(", ")"), ("[", "]"), ("{", "}")][rng.below(3)];
                    out.push_str(open);
                    let inner = rng.below(6);
                    random_tokens(rng, out, depth + 1, inner);
                    out.push_str(close);
                }
                _ => out.push_str(VOCAB[rng.below(VOCAB.len())]),
            }
            out.push(' ');
        }
    }

    /// A statement of the grammar with one random mutation at most.
    fn plausible_stmt(rng: &mut Rng) -> String {
        const STMTS: &[&str] = &[
            "input x : [ 8 , 4 ] as i32 ;",
            "layer enc = Dense ( 16 , activation = relu ) ;",
            "let ( a , b ) = enc ( x ) ;",
            "let m = Concatenate ( axis = - 1 ) ( [ a , Dense ( 2 ) ( b ) ] ) ;",
            "output y = Dense ( 1 ) ( m ) ;",
            "layer v = crate :: m :: VisionNet ;",
        ];
        let words: Vec<&str> = STMTS[rng.below(STMTS.len())].split(' ').collect();
        let mut out = String::new();
        let mut depth = 0i32;
        let cut = rng.below(words.len() + 1);
        for (i, w) in words.iter().enumerate() {
            // Mutate by dropping or replacing one token, as long as delimiters stay balanced.
            let delimiter = matches!(*w, "(" | ")" | "[" | "]");
            if i == cut && !delimiter {
                if rng.below(2) == 0 {
                    out.push_str(VOCAB[rng.below(VOCAB.len())]);
                    out.push(' ');
                }
                continue;
            }
            depth += match *w {
                "(" | "[" => 1,
                ")" | "]" => -1,
                _ => 0,
            };
            out.push_str(w);
            out.push(' ');
        }
        assert_eq!(depth, 0);
        out
    }

    #[test]
    fn random_token_streams_never_panic() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..4000 {
            let mut src = String::new();
            match round % 3 {
                0 => {
                    let len = rng.below(30);
                    random_tokens(&mut rng, &mut src, 0, len);
                }
                1 => {
                    src.push_str("pub struct M { ");
                    let len = rng.below(20);
                    random_tokens(&mut rng, &mut src, 1, len);
                    src.push_str(" }");
                }
                _ => {
                    src.push_str("/// doc\n pub struct M { ");
                    for _ in 0..rng.below(8) {
                        src.push_str(&plausible_stmt(&mut rng));
                    }
                    src.push_str(" } struct N { input z: [1]; }");
                }
            }
            let Ok(ts) = TokenStream::from_str(&src) else { continue };
            let mut diags = Diagnostics::new();
            let (file, outer) = parse_with_status(ts, 0, &mut diags);
            assert!(outer.is_ok(), "syn's end check fired on {src:?}: {:?}", outer.err().map(|e| e.to_string()));
            if round % 3 == 2 {
                assert!(file.models.iter().any(|m| m.name == "N"), "the model after M was lost: {src:?}");
            }
            if diags.is_empty() {
                assert!(!file.models.is_empty(), "no error and no model: {src:?}");
            }
        }
    }
}
