//! The rules a `#[task_handler]` function's signature must follow, one
//! `check_*` function per rule, and the [`Handler`] they leave behind for
//! the generator: which argument is the context, the states and the
//! payload, and the parts of the return type.
//!
//! Every check records its error, spanned at the user's tokens, in
//! [`Errors`] and carries on, so one compile reports every problem. The
//! order of the calls in [`check_signature`] is the order of the messages.

use crate::errors::Errors;
use syn::ext::IdentExt;
use syn::{
    FnArg, GenericArgument, PatType, PathArguments, Receiver, ReturnType, Signature, Type,
    TypePath, TypeReference,
};

/// How the handler takes its task context.
#[derive(Clone, Copy)]
pub(crate) enum Ctx {
    Owned,
    Borrowed,
}

/// One argument of the handler, in declaration order.
pub(crate) enum Arg {
    Ctx(Ctx),
    /// The index into `Handler::states`.
    State(usize),
    Payload,
}

/// The parts of the return type the generated code needs.
pub(crate) struct Return {
    /// The whole return type, `Result<T, E>` or an alias of it.
    pub ty: Type,
    /// `T`, when written out.
    pub output: Option<Type>,
    /// `E`, when written out.
    pub error: Option<Type>,
}

/// A `State<T>` argument.
pub(crate) struct StateArg {
    /// The argument's type as written, `State<T>`.
    pub ty: Type,
    /// `T`.
    pub inner: Type,
}

/// Everything checked about the function.
pub(crate) struct Handler {
    pub args: Vec<Arg>,
    pub payload: Type,
    pub states: Vec<StateArg>,
    pub ret: Return,
}

/// Checks every rule of the signature; the handler when nothing stands in
/// the way of generating it (the caller still looks at `errors`).
pub(crate) fn check_signature(sig: &Signature, errors: &mut Errors) -> Option<Handler> {
    check_async(sig, errors);
    check_not_const(sig, errors);
    check_not_unsafe(sig, errors);
    check_no_abi(sig, errors);
    check_not_generic(sig, errors);
    check_no_where_clause(sig, errors);
    check_not_variadic(sig, errors);
    let inputs = check_inputs(sig, errors);
    check_payload_present(sig, &inputs, errors);
    let ret = check_return(sig, errors);
    Some(Handler {
        args: inputs.args,
        payload: inputs.payload?,
        states: inputs.states,
        ret: ret?,
    })
}

fn check_async(sig: &Signature, errors: &mut Errors) {
    if sig.asyncness.is_none() {
        let name = &sig.ident;
        errors.spanned(
            sig.fn_token,
            format!("#[task_handler] requires an `async fn`: write `async fn {name}`"),
        );
    }
}

fn check_not_const(sig: &Signature, errors: &mut Errors) {
    if let Some(c) = &sig.constness {
        errors.spanned(c, "a task handler cannot be a `const fn`");
    }
}

fn check_not_unsafe(sig: &Signature, errors: &mut Errors) {
    if let Some(u) = &sig.unsafety {
        errors.spanned(u, "a task handler cannot be an `unsafe fn`");
    }
}

fn check_no_abi(sig: &Signature, errors: &mut Errors) {
    if let Some(abi) = &sig.abi {
        errors.spanned(abi, "a task handler cannot have an `extern` ABI");
    }
}

fn check_not_generic(sig: &Signature, errors: &mut Errors) {
    if !sig.generics.params.is_empty() {
        errors.spanned(
            &sig.generics,
            "a task handler cannot be generic: the payload and result types must be concrete \
             so tasks can be decoded and enqueued by type",
        );
    }
}

fn check_no_where_clause(sig: &Signature, errors: &mut Errors) {
    if let Some(w) = &sig.generics.where_clause {
        errors.spanned(w, "a task handler cannot have a `where` clause");
    }
}

fn check_not_variadic(sig: &Signature, errors: &mut Errors) {
    if let Some(v) = &sig.variadic {
        errors.spanned(v, "a task handler cannot be variadic");
    }
}

/// The arguments sorted so far.
#[derive(Default)]
struct Inputs {
    args: Vec<Arg>,
    states: Vec<StateArg>,
    payload: Option<Type>,
    /// A payload argument was written but refused (reported).
    payload_rejected: bool,
    ctx_seen: bool,
}

/// Sorts the arguments into context, states and payload, checking each.
fn check_inputs(sig: &Signature, errors: &mut Errors) -> Inputs {
    let mut inputs = Inputs::default();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => check_no_receiver(r, errors),
            FnArg::Typed(t) => inputs.add(t, errors),
        }
    }
    inputs
}

fn check_no_receiver(r: &Receiver, errors: &mut Errors) {
    errors.spanned(
        r,
        "a task handler cannot take `self`: use a free `async fn` \
         (outside any `impl` block)",
    );
}

impl Inputs {
    /// One typed argument: the context, a state, or else the payload.
    fn add(&mut self, pat_type: &PatType, errors: &mut Errors) {
        let ty = &*pat_type.ty;
        if let Some(ctx) = context_kind(ty, errors) {
            check_context_once(self.ctx_seen, ty, errors);
            self.ctx_seen = true;
            self.args.push(Arg::Ctx(ctx));
            return;
        }
        match state_inner(ty, errors) {
            Some(Some(inner)) => {
                self.args.push(Arg::State(self.states.len()));
                self.states.push(StateArg {
                    ty: ty.clone(),
                    inner,
                });
            }
            // a state taken wrongly: reported, and not a payload either
            Some(None) => {}
            None => self.add_payload(pat_type, errors),
        }
    }

    fn add_payload(&mut self, pat_type: &PatType, errors: &mut Errors) {
        if !check_one_payload(self, pat_type, errors) {
            return;
        }
        let ty = &*pat_type.ty;
        if check_payload_type(ty, errors) {
            self.payload = Some(ty.clone());
            self.args.push(Arg::Payload);
        } else {
            self.payload_rejected = true;
        }
    }
}

fn check_context_once(ctx_seen: bool, ty: &Type, errors: &mut Errors) {
    if ctx_seen {
        errors.spanned(ty, "the task context can be taken only once");
    }
}

/// False (reported) when a payload argument came before this one.
fn check_one_payload(inputs: &Inputs, pat_type: &PatType, errors: &mut Errors) -> bool {
    if inputs.payload.is_some() || inputs.payload_rejected {
        errors.spanned(
            pat_type,
            "a task handler takes one payload argument, optionally a `TaskContext` and \
             any number of `State<T>`; put further values in the payload type",
        );
        return false;
    }
    true
}

fn check_payload_present(sig: &Signature, inputs: &Inputs, errors: &mut Errors) {
    if inputs.payload.is_none() && !inputs.payload_rejected {
        let name = &sig.ident;
        errors.at(
            sig.paren_token.span.join(),
            format!(
                "missing payload argument: a task handler takes its task's payload, \
                 e.g. `async fn {name}(email: NewEmail)` (any `serde::de::DeserializeOwned` type)"
            ),
        );
    }
}

/// Is this argument a shared state (`State<T>`, any path)? `Some(Some(T))`
/// when it is, `Some(None)` when it is one taken wrongly (reported).
fn state_inner(ty: &Type, errors: &mut Errors) -> Option<Option<Type>> {
    match ty {
        Type::Path(p) => {
            let last = p.path.segments.last()?;
            if p.qself.is_some() || last.ident != "State" {
                return None;
            }
            match &last.arguments {
                PathArguments::AngleBracketed(a) if a.args.len() == 1 => match a.args.first() {
                    Some(GenericArgument::Type(t)) => Some(Some(t.clone())),
                    _ => None,
                },
                _ => None,
            }
        }
        Type::Reference(r) => {
            state_inner(&r.elem, &mut Errors::default())?;
            check_state_by_value(r, errors);
            Some(None)
        }
        Type::Paren(p) => state_inner(&p.elem, errors),
        _ => None,
    }
}

/// A state behind a reference: always an error.
fn check_state_by_value(r: &TypeReference, errors: &mut Errors) {
    errors.spanned(
        r.and_token,
        "take shared state by value: `State(db): State<Db>` (it is cloned for every task)",
    );
}

/// Is this argument the task context (`TaskContext` or `&TaskContext`, any path)?
fn context_kind(ty: &Type, errors: &mut Errors) -> Option<Ctx> {
    let kind = context_kind_quiet(ty)?;
    check_context_shared(ty, errors);
    Some(kind)
}

fn check_context_shared(ty: &Type, errors: &mut Errors) {
    if let Type::Reference(TypeReference {
        mutability: Some(_),
        ..
    }) = ty
    {
        errors.spanned(
            ty,
            "the task context is shared: take it as `TaskContext` or `&TaskContext`",
        );
    }
}

fn context_kind_quiet(ty: &Type) -> Option<Ctx> {
    match ty {
        Type::Path(p) if is_context_path(p) => Some(Ctx::Owned),
        Type::Reference(r) => match &*r.elem {
            Type::Path(p) if is_context_path(p) => Some(Ctx::Borrowed),
            _ => None,
        },
        Type::Paren(p) => context_kind_quiet(&p.elem),
        _ => None,
    }
}

fn is_context_path(p: &TypePath) -> bool {
    p.qself.is_none()
        && p.path
            .segments
            .last()
            .is_some_and(|s| s.ident == "TaskContext" && s.arguments.is_empty())
}

/// Rejects payload types that can never be `DeserializeOwned + 'static` or
/// that would make the handler generic.
fn check_payload_type(ty: &Type, errors: &mut Errors) -> bool {
    match ty {
        Type::Reference(r) => {
            errors.spanned(
                r.and_token,
                "the payload must be an owned type (`serde::de::DeserializeOwned`): \
                 remove the `&` and take the payload by value",
            );
            false
        }
        Type::ImplTrait(t) => {
            errors.spanned(
                t,
                "a task handler cannot be generic: use a concrete payload type instead of \
                 `impl Trait`",
            );
            false
        }
        Type::Infer(t) => {
            errors.spanned(t, "the payload type must be written out");
            false
        }
        Type::Never(t) => {
            errors.spanned(t, "the payload type cannot be `!`");
            false
        }
        _ => true,
    }
}

/// The return type: present, a `…Result<T, E>`, with concrete types.
fn check_return(sig: &Signature, errors: &mut Errors) -> Option<Return> {
    match &sig.output {
        ReturnType::Default => {
            check_return_present(sig, errors);
            None
        }
        ReturnType::Type(_, ty) => check_return_type(ty, errors),
    }
}

/// A missing return type: always an error.
fn check_return_present(sig: &Signature, errors: &mut Errors) {
    let name = &sig.ident;
    errors.at(
        sig.paren_token.span.close(),
        format!(
            "missing return type: a task handler returns `Result<T, E>` where T: \
             serde::Serialize is stored as the task result and E converts into \
             asyncjobs::HandlerError, e.g. `async fn {name}(..) -> Result<Receipt, MyError>`"
        ),
    );
}

fn check_return_type(ty: &Type, errors: &mut Errors) -> Option<Return> {
    let Some(types) = result_arguments(ty) else {
        errors.spanned(
            ty,
            "unsupported return type: a task handler returns `Result<T, E>` (or an alias such as \
             `anyhow::Result<T>`) where T: serde::Serialize is stored as the task result and E \
             converts into asyncjobs::HandlerError",
        );
        return None;
    };
    if !check_result_concrete(&types, errors) {
        return None;
    }
    Some(Return {
        ty: ty.clone(),
        output: types.first().map(|t| (*t).clone()),
        error: types.get(1).map(|t| (*t).clone()),
    })
}

/// The type arguments of a path type whose last segment ends in `Result`
/// (`Result<T, E>`, `io::Result<T>`, `anyhow::Result<T>`), or `None` when
/// the type is not one.
fn result_arguments(ty: &Type) -> Option<Vec<&Type>> {
    let Type::Path(p) = ty else {
        return None;
    };
    let last = p.path.segments.last()?;
    if p.qself.is_some() || !last.ident.unraw().to_string().ends_with("Result") {
        return None;
    }
    match &last.arguments {
        PathArguments::None => Some(Vec::new()),
        PathArguments::AngleBracketed(a) => Some(
            a.args
                .iter()
                .filter_map(|g| match g {
                    GenericArgument::Type(t) => Some(t),
                    _ => None,
                })
                .collect(),
        ),
        PathArguments::Parenthesized(_) => None,
    }
}

/// False (reported, at the first one) when the result or error type is an
/// `impl Trait`.
fn check_result_concrete(types: &[&Type], errors: &mut Errors) -> bool {
    for t in types {
        if let Type::ImplTrait(i) = t {
            errors.spanned(
                i,
                "the result and error types must be concrete, not `impl Trait`",
            );
            return false;
        }
    }
    true
}
