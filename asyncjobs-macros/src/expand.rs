//! `#[task_handler]`: checks the function and generates its sibling module.

use crate::attr::Args;
use crate::errors::Errors;
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{
    FnArg, GenericArgument, Ident, ItemFn, PathArguments, ReturnType, Signature, Type, TypePath,
    TypeReference,
};

/// How the handler takes its task context.
#[derive(Clone, Copy)]
enum Ctx {
    Owned,
    Borrowed,
}

/// One argument of the handler, in declaration order.
enum Arg {
    Ctx(Ctx),
    /// The index into `Handler::states`.
    State(usize),
    Payload,
}

/// The parts of the return type the generated code needs.
struct Return {
    /// The whole return type, `Result<T, E>` or an alias of it.
    ty: Type,
    /// `T`, when written out.
    output: Option<Type>,
    /// `E`, when written out.
    error: Option<Type>,
}

/// A `State<T>` argument.
struct StateArg {
    /// The argument's type as written, `State<T>`.
    ty: Type,
    /// `T`.
    inner: Type,
}

/// Everything checked about the function.
struct Handler {
    args: Vec<Arg>,
    payload: Type,
    states: Vec<StateArg>,
    ret: Return,
}

/// Expands the attribute; on any error the function is emitted unchanged
/// beside the `compile_error!`s so the rest of the crate still type-checks.
pub(crate) fn task_handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = Args::parse(attr, &mut errors);
    let func = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(func) => func,
        Err(e) => {
            errors.at(
                e.span(),
                format!("#[task_handler] applies to an `async fn` with a body: {e}"),
            );
            let compile_errors = errors.into_compile_errors();
            return quote!(#item #compile_errors);
        }
    };
    let handler = check_signature(&func.sig, &mut errors);
    match (errors.into_compile_errors(), handler) {
        (None, Some(handler)) => generate(&args, &func, &handler),
        (compile_errors, _) => quote!(#item #compile_errors),
    }
}

fn check_signature(sig: &Signature, errors: &mut Errors) -> Option<Handler> {
    let name = &sig.ident;
    if sig.asyncness.is_none() {
        errors.spanned(
            sig.fn_token,
            format!("#[task_handler] requires an `async fn`: write `async fn {name}`"),
        );
    }
    if let Some(c) = &sig.constness {
        errors.spanned(c, "a task handler cannot be a `const fn`");
    }
    if let Some(u) = &sig.unsafety {
        errors.spanned(u, "a task handler cannot be an `unsafe fn`");
    }
    if let Some(abi) = &sig.abi {
        errors.spanned(abi, "a task handler cannot have an `extern` ABI");
    }
    if !sig.generics.params.is_empty() {
        errors.spanned(
            &sig.generics,
            "a task handler cannot be generic: the payload and result types must be concrete \
             so tasks can be decoded and enqueued by type",
        );
    }
    if let Some(w) = &sig.generics.where_clause {
        errors.spanned(w, "a task handler cannot have a `where` clause");
    }
    if let Some(v) = &sig.variadic {
        errors.spanned(v, "a task handler cannot be variadic");
    }

    let mut args = Vec::new();
    let mut states: Vec<StateArg> = Vec::new();
    let mut payload: Option<Type> = None;
    let mut payload_rejected = false;
    let mut ctx_seen = false;
    for input in &sig.inputs {
        let pat_type = match input {
            FnArg::Receiver(r) => {
                errors.spanned(
                    r,
                    "a task handler cannot take `self`: use a free `async fn` \
                     (outside any `impl` block)",
                );
                continue;
            }
            FnArg::Typed(t) => t,
        };
        let ty = &*pat_type.ty;
        if let Some(ctx) = context_kind(ty, errors) {
            if ctx_seen {
                errors.spanned(ty, "the task context can be taken only once");
            }
            ctx_seen = true;
            args.push(Arg::Ctx(ctx));
            continue;
        }
        match state_inner(ty, errors) {
            Some(Some(inner)) => {
                args.push(Arg::State(states.len()));
                states.push(StateArg {
                    ty: ty.clone(),
                    inner,
                });
                continue;
            }
            // a state taken wrongly: reported, and not a payload either
            Some(None) => continue,
            None => {}
        }
        if payload.is_some() || payload_rejected {
            errors.spanned(
                pat_type,
                "a task handler takes one payload argument, optionally a `TaskContext` and \
                 any number of `State<T>`; put further values in the payload type",
            );
            continue;
        }
        if check_payload_type(ty, errors) {
            payload = Some(ty.clone());
            args.push(Arg::Payload);
        } else {
            payload_rejected = true;
        }
    }
    if payload.is_none() && !payload_rejected {
        errors.at(
            sig.paren_token.span.join(),
            format!(
                "missing payload argument: a task handler takes its task's payload, \
                 e.g. `async fn {name}(email: NewEmail)` (any `serde::de::DeserializeOwned` type)"
            ),
        );
    }

    let ret = match &sig.output {
        ReturnType::Default => {
            errors.at(
                sig.paren_token.span.close(),
                format!(
                    "missing return type: a task handler returns `Result<T, E>` where T: \
                     serde::Serialize is stored as the task result and E converts into \
                     asyncjobs::HandlerError, e.g. `async fn {name}(..) -> Result<Receipt, MyError>`"
                ),
            );
            None
        }
        ReturnType::Type(_, ty) => check_return_type(ty, errors),
    };
    Some(Handler {
        args,
        payload: payload?,
        states,
        ret: ret?,
    })
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
            errors.spanned(
                r.and_token,
                "take shared state by value: `State(db): State<Db>` (it is cloned for every task)",
            );
            Some(None)
        }
        Type::Paren(p) => state_inner(&p.elem, errors),
        _ => None,
    }
}

/// Is this argument the task context (`TaskContext` or `&TaskContext`, any path)?
fn context_kind(ty: &Type, errors: &mut Errors) -> Option<Ctx> {
    let kind = context_kind_quiet(ty)?;
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
    Some(kind)
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

fn check_return_type(ty: &Type, errors: &mut Errors) -> Option<Return> {
    let unsupported = |errors: &mut Errors| {
        errors.spanned(
            ty,
            "unsupported return type: a task handler returns `Result<T, E>` (or an alias such as \
             `anyhow::Result<T>`) where T: serde::Serialize is stored as the task result and E \
             converts into asyncjobs::HandlerError",
        );
        None
    };
    let Type::Path(p) = ty else {
        return unsupported(errors);
    };
    let Some(last) = p.path.segments.last() else {
        return unsupported(errors);
    };
    if p.qself.is_some() || !last.ident.unraw().to_string().ends_with("Result") {
        return unsupported(errors);
    }
    let types: Vec<&Type> = match &last.arguments {
        PathArguments::None => Vec::new(),
        PathArguments::AngleBracketed(a) => a
            .args
            .iter()
            .filter_map(|g| match g {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
        PathArguments::Parenthesized(_) => return unsupported(errors),
    };
    for t in &types {
        if let Type::ImplTrait(i) = t {
            errors.spanned(
                i,
                "the result and error types must be concrete, not `impl Trait`",
            );
            return None;
        }
    }
    Some(Return {
        ty: ty.clone(),
        output: types.first().map(|t| (*t).clone()),
        error: types.get(1).map(|t| (*t).clone()),
    })
}

/// `tokens` with every span set to `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tt| {
            if let proc_macro2::TokenTree::Group(g) = &tt {
                let mut group = proc_macro2::Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                tt = proc_macro2::TokenTree::Group(group);
            } else {
                tt.set_span(span);
            }
            tt
        })
        .collect()
}

/// `Vec < String >` → `Vec<String>` for the names `--list-handlers` prints.
fn type_name(ty: &Type) -> String {
    let mut s = ty.to_token_stream().to_string();
    for (from, to) in [
        (" < ", "<"),
        ("< ", "<"),
        (" >", ">"),
        (" , ", ", "),
        (" :: ", "::"),
        (":: ", "::"),
        ("& ", "&"),
        (" ;", ";"),
    ] {
        s = s.replace(from, to);
    }
    s
}

/// The generated code, in two places:
///
/// * beside the function, in its scope (where its types resolve as written):
///   the bound checks, an adapter `__asyncjobs_<fn>_run`, an
///   `impl HandlerSite for <fn>::__Key` giving the payload and result types
///   and building the handler, and a trait `__asyncjobs_<fn>_AtModuleLevel`;
/// * the module `<fn>`, which reaches those types only through
///   `<__Key as HandlerSite>` (never `super::`), so it compiles wherever the
///   function is declared.
///
/// A handler must be at module level: its module's items are useless inside
/// a function body, and its registration would be spooky there. The module
/// checks this by glob-importing its parent (`use super::*`) and calling a
/// method: at module level the parent holds the site's trait, whose method
/// (taking `self` by value) wins; in a function body `super` skips the body,
/// so only the fallback for `&T` applies, and its result fails an
/// `on_unimplemented` bound with one message at the function's name.
fn generate(args: &Args, func: &ItemFn, handler: &Handler) -> TokenStream {
    // Generated code reaches the runtime only through `__private`, so the
    // crate path itself is not kept around.
    let private = {
        let krate = args
            .krate
            .as_ref()
            .map(|p| p.to_token_stream())
            .unwrap_or_else(|| quote!(::asyncjobs));
        quote!(#krate::__private)
    };
    let vis = &func.vis;
    let fn_name = &func.sig.ident;
    let unraw = fn_name.unraw();
    let run_fn = format_ident!("__asyncjobs_{}_run", unraw);
    let level_trait = format_ident!("__asyncjobs_{}_AtModuleLevel", unraw);

    let task_type = args
        .task_type
        .as_ref()
        .map(|t| t.value())
        .unwrap_or_default();
    let catch_all = task_type.is_empty();
    let queue_lit = args.queue.as_ref().map(|q| q.value());
    let queue_decl = match &queue_lit {
        Some(q) => quote!(::core::option::Option::Some(#q)),
        None => quote!(::core::option::Option::None),
    };
    let queue_value = match &queue_lit {
        Some(q) => quote!(#q),
        None => quote!(#private::DEFAULT_QUEUE_NAME),
    };
    let option = |v: Option<TokenStream>| match v {
        Some(v) => quote!(::core::option::Option::Some(#v)),
        None => quote!(::core::option::Option::None),
    };
    let nanos =
        |ns: Option<u64>| option(ns.map(|ns| quote!(::core::time::Duration::from_nanos(#ns))));
    let max_tries = option(args.max_tries.map(|n| quote!(#n)));
    let deadline = nanos(args.deadline_ns);
    let queue_run_time = nanos(args.queue_run_time_ns);
    let queue_max_tries = option(args.queue_max_tries.map(|n| quote!(#n)));
    let queue_concurrency = option(args.queue_concurrency.map(|n| quote!(#n)));

    let payload_ty = &handler.payload;
    let ret_ty = &handler.ret.ty;
    let output_ty = match &handler.ret.output {
        Some(t) => t.to_token_stream(),
        None => quote!(<#ret_ty as #private::HandlerReturn>::Output),
    };
    let payload_name = type_name(payload_ty);
    let output_name = match &handler.ret.output {
        Some(t) => type_name(t),
        None => type_name(ret_ty),
    };

    // axum-style bound checks: one hidden function per requirement, spanned
    // at the user's tokens, so an unsatisfied bound is reported on that
    // argument or type (and only there: the handler below falls back
    // silently when a bound does not hold).
    let check = |name: &str, span: Span, predicate: TokenStream| {
        let name = format_ident!("__asyncjobs_check_{}", name, span = span);
        quote_spanned! {span=>
            fn #name() where #predicate {}
        }
    };
    // Every token of a predicate must carry the user's span: a predicate
    // mixing in call-site tokens is reported at the attribute instead.
    let at = |span: Span| respan(private.clone(), span);
    // A call, not a `where` clause: a higher-ranked `where` bound would not
    // be checked here, and `DeserializeOwned` would hide serde's hint to
    // derive `Deserialize`.
    let payload_check = {
        let span = payload_ty.span();
        let p = at(span);
        quote_spanned! {span=>
            fn __asyncjobs_check_payload() {
                #p::assert_payload::<#payload_ty>();
            }
        }
    };
    // With `E` written out, `Result<T, E>` is checked for being a result and
    // `E` on its own; otherwise one check covers the result and its error.
    let return_check = {
        let span = ret_ty.span();
        let p = at(span);
        let bound = if handler.ret.error.is_some() {
            quote_spanned!(span=> #p::HandlerReturn)
        } else {
            quote_spanned!(span=> #p::HandlerReturnWithError)
        };
        check("return", span, quote_spanned!(span=> #ret_ty: #bound))
    };
    let output_check = match &handler.ret.output {
        Some(t) => {
            let span = t.span();
            let p = at(span);
            check(
                "output",
                span,
                quote_spanned!(span=> #t: #p::serde::Serialize),
            )
        }
        None => {
            let span = ret_ty.span();
            let p = at(span);
            check(
                "output",
                span,
                quote_spanned!(span=> <#ret_ty as #p::HandlerReturn>::Output: #p::serde::Serialize),
            )
        }
    };
    let error_check = match &handler.ret.error {
        Some(e) => {
            let span = e.span();
            let p = at(span);
            check(
                "error",
                span,
                quote_spanned!(span=> #e: ::core::convert::Into<#p::HandlerError>),
            )
        }
        None => quote!(),
    };
    let state_checks = handler.states.iter().enumerate().map(|(i, s)| {
        let ty = &s.ty;
        // at `State` itself (a type's own span is its first token's)
        let span = match ty {
            Type::Path(p) => p.path.segments.last().map_or(ty.span(), |s| s.ident.span()),
            _ => ty.span(),
        };
        let p = at(span);
        check(
            &format!("state{i}"),
            span,
            quote_spanned!(span=> #ty: #p::StateArg),
        )
    });
    // The handler's future must be `Send` to run on the worker's runtime.
    let placeholders = handler.args.iter().map(|_| quote!(loop {}));
    let send_check = quote_spanned! {fn_name.span()=>
        #[allow(unreachable_code, clippy::diverging_sub_expression)]
        fn __asyncjobs_check_send() {
            fn __asyncjobs_assert_send<T: ::core::marker::Send>(_: T) {}
            __asyncjobs_assert_send(#fn_name(#(#placeholders),*));
        }
    };

    // An adapter with the context by value and the states in a tuple, in the
    // user's scope (so the types resolve as written). Being a separate fn,
    // its future's `Send` is known when the handler below is selected.
    let state_vars: Vec<Ident> = (0..handler.states.len())
        .map(|i| format_ident!("__state{}", i))
        .collect();
    let state_tys: Vec<&Type> = handler.states.iter().map(|s| &s.ty).collect();
    let call_args = handler.args.iter().map(|a| match a {
        Arg::Ctx(Ctx::Owned) => quote!(__ctx),
        Arg::Ctx(Ctx::Borrowed) => quote!(&__ctx),
        Arg::State(i) => {
            let v = &state_vars[*i];
            quote!(#v)
        }
        Arg::Payload => quote!(__payload),
    });
    let run = quote! {
        #[doc(hidden)]
        #[allow(non_snake_case)]
        async fn #run_fn(
            __ctx: #private::TaskContext,
            (#(#state_vars,)*): (#(#state_tys,)*),
            __payload: #payload_ty,
        ) -> #ret_ty {
            #fn_name(#(#call_args),*).await
        }
    };
    // Each state is looked up once, here, when the handler is built (at
    // worker start-up); the closure hands every task a clone. Autoref
    // specialization as for the handler: `TakeStateChecked` applies when
    // the argument is a usable `State<T>`, otherwise the check above has
    // failed the build already.
    let state_names: Vec<String> = handler.states.iter().map(|s| type_name(&s.inner)).collect();
    let state_inner: Vec<&Type> = handler.states.iter().map(|s| &s.inner).collect();
    // Autoref specialization: `Typed` applies when every bound above holds;
    // otherwise `Unchecked` is picked (so no second error is reported here),
    // whose use would fail the build after type checking, which the checks
    // above have already failed.
    let site = quote! {
        impl #private::HandlerSite for #fn_name::__Key {
            type Payload = #payload_ty;
            type Output = #output_ty;
            const STATES: &'static [#private::StateDecl] = &[
                #(#private::StateDecl {
                    type_name: #state_names,
                    type_id: ::core::any::TypeId::of::<#state_tys>,
                    full_name: ::core::any::type_name::<#state_inner>,
                },)*
            ];

            fn make(
                __states: &#private::States,
            ) -> ::core::result::Result<#private::BoxHandler, #private::MissingState> {
                use #private::{Typed as _, Unchecked as _};
                use #private::{TakeStateChecked as _, TakeStateUnchecked as _};
                #(
                    let #state_vars = (&&#private::TakeState::<#state_tys>::new()).take(__states)?;
                )*
                ::core::result::Result::Ok(
                    (&&#private::MakeHandler::<#payload_ty, _>::new(
                        move |__ctx: #private::TaskContext, __payload: #payload_ty| {
                            #run_fn(__ctx, (#(#state_vars.get(),)*), __payload)
                        },
                    ))
                        .make_handler(),
                )
            }
        }
    };
    let level_site = quote! {
        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code)]
        trait #level_trait {
            fn __asyncjobs_module_level(self) -> #private::ModuleLevel;
        }

        impl #level_trait for #fn_name::__Key {
            fn __asyncjobs_module_level(self) -> #private::ModuleLevel {
                #private::ModuleLevel
            }
        }
    };
    let level_check = {
        let span = fn_name.span();
        let p = at(span);
        quote_spanned! {span=>
            #[allow(unused_imports, dead_code, clippy::all, clippy::pedantic)]
            const _: () = {
                use super::*;
                use #p::NotAtModuleLevel as _;
                fn __asyncjobs_check_module_level() {
                    #p::assert_module_level(self::__Key.__asyncjobs_module_level());
                }
            };
        }
    };

    let line = quote_spanned!(fn_name.span()=> ::core::line!());
    let doc_mod = format!(
        " Task handler `{task_type}` on queue `{queue}`, generated by `#[task_handler]` for \
         the `async fn {unraw}` of the same name.\n\n\
         {enqueue}Register it explicitly with `Router::register({unraw}::HANDLER)` or \
         `Handlers::with({unraw}::HANDLER)`; `asyncjobs::main!()` finds it on its own.",
        queue = queue_lit.as_deref().unwrap_or("DEFAULT (none named)"),
        enqueue = if catch_all {
            String::new()
        } else {
            format!(
                "Enqueue typed tasks with `{unraw}::enqueue(&client, payload)`, which returns \
                 a handle with the task id. "
            )
        },
    );
    let doc_task_type = if catch_all {
        " The task type: `\"\"`, the catch-all for types no other handler on the queue takes."
            .to_string()
    } else {
        format!(" The task type: `{task_type}`.")
    };

    // A higher-ranked bound is checked where the function is called, not
    // where it is defined: a payload that is only `Deserialize` still makes a
    // handler, and enqueueing it then reports the missing `Serialize`.
    let serialize = quote!(for<'__asyncjobs> Payload: #private::serde::Serialize);
    let enqueue_items = if catch_all {
        quote!()
    } else {
        quote! {
            /// This handler with its payload and result types, for
            /// `asyncjobs::testing::TestWorker::call`.
            pub const TYPED: #private::TypedHandlerDef<Payload, Output> =
                #private::TypedHandlerDef::__new(HANDLER);

            /// A task builder for `payload` with this handler's task type and
            /// defaults (max tries, deadline) applied.
            pub fn task(payload: &Payload) -> #private::TaskBuilder
            where
                #serialize,
            {
                #private::task_builder(TASK_TYPE, payload, MAX_TRIES, DEADLINE)
            }

            /// Enqueues a task with `payload` into this handler's queue and
            /// returns a typed handle carrying the task id.
            ///
            /// A missing queue is created first with the handler's declared
            /// queue settings (once per client; an existing queue is used as
            /// it is).
            pub async fn enqueue(
                client: &#private::Client,
                payload: Payload,
            ) -> #private::Result<#private::TaskHandle<Output>>
            where
                #serialize,
            {
                #private::enqueue(client, &HANDLER, task(&payload)).await
            }

            /// Like `enqueue`, letting `options` adjust the task first
            /// (dependencies, a custom id, other limits).
            pub async fn enqueue_with(
                client: &#private::Client,
                payload: Payload,
                options: impl ::core::ops::FnOnce(#private::TaskBuilder) -> #private::TaskBuilder,
            ) -> #private::Result<#private::TaskHandle<Output>>
            where
                #serialize,
            {
                #private::enqueue(client, &HANDLER, options(task(&payload))).await
            }
        }
    };

    quote! {
        #func

        #run

        #site

        #level_site

        #[allow(non_snake_case, dead_code, clippy::all)]
        const _: () = {
            #payload_check
            #return_check
            #output_check
            #error_check
            #(#state_checks)*
            #send_check
        };

        #[doc = #doc_mod]
        #vis mod #fn_name {
            #[doc(hidden)]
            pub struct __Key;

            #[doc = #doc_task_type]
            pub const TASK_TYPE: &str = #task_type;

            /// The queue whose worker runs this handler and that `enqueue` uses.
            pub const QUEUE: &str = #queue_value;

            /// Maximum tries `enqueue` sets (`None`: the task default).
            pub const MAX_TRIES: ::core::option::Option<i64> = #max_tries;

            /// How long after enqueueing a task may still start (`None`: no deadline).
            pub const DEADLINE: ::core::option::Option<::core::time::Duration> = #deadline;

            /// The payload type the handler decodes.
            pub type Payload = <__Key as #private::HandlerSite>::Payload;

            /// The result type stored when the handler succeeds.
            pub type Output = <__Key as #private::HandlerSite>::Output;

            /// The handler's registration: pass it to `Router::register` or
            /// `Handlers::with` to register it without the inventory.
            pub const HANDLER: #private::HandlerDef = #private::handler_def(#private::Declared {
                task_type: TASK_TYPE,
                queue: #queue_decl,
                name: ::core::module_path!(),
                file: ::core::file!(),
                line: #line,
                payload_type: #payload_name,
                output_type: #output_name,
                max_tries: MAX_TRIES,
                deadline: DEADLINE,
                queue_settings: #private::QueueSettings {
                    max_run_time: #queue_run_time,
                    max_tries: #queue_max_tries,
                    max_concurrent: #queue_concurrency,
                },
                states: <__Key as #private::HandlerSite>::STATES,
                make: <__Key as #private::HandlerSite>::make,
            });

            #private::inventory::submit! { HANDLER }

            #level_check

            #enqueue_items
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proc_macro2::TokenTree;

    /// The identifiers and punctuation of `tokens`, groups flattened.
    fn flatten(tokens: TokenStream, out: &mut Vec<String>) {
        for tt in tokens {
            match tt {
                TokenTree::Group(g) => flatten(g.stream(), out),
                TokenTree::Ident(i) => out.push(i.to_string()),
                TokenTree::Punct(p) => out.push(p.as_char().to_string()),
                TokenTree::Literal(_) => out.push("<lit>".into()),
            }
        }
    }

    /// Expands each handler and checks that every path through `crate_ident`
    /// (the last segment of the crate path) continues with `::__private`.
    fn assert_only_private(attr: TokenStream, items: &[TokenStream], crate_ident: &str) {
        for item in items {
            let out = task_handler(attr.clone(), item.clone());
            let text = out.to_string();
            assert!(
                !text.contains("compile_error"),
                "expansion failed for {item}: {text}"
            );
            let mut toks = Vec::new();
            flatten(out, &mut toks);
            let mut uses = 0;
            for (i, t) in toks.iter().enumerate() {
                if t != crate_ident || toks.get(i + 1..i + 3) != Some(&[":".into(), ":".into()]) {
                    continue;
                }
                uses += 1;
                assert_eq!(
                    toks.get(i + 3).map(String::as_str),
                    Some("__private"),
                    "generated code names `{crate_ident}::{}` instead of going through \
                     `{crate_ident}::__private`, in:\n{text}",
                    toks.get(i + 3).map(String::as_str).unwrap_or("")
                );
            }
            assert!(uses > 0, "no path through `{crate_ident}` in:\n{text}");
        }
    }

    fn handlers() -> Vec<TokenStream> {
        vec![
            quote! {
                pub async fn send(ctx: TaskContext, email: Email) -> Result<Receipt, MyError> {
                    todo!()
                }
            },
            quote! {
                async fn bounce(email: Email, ctx: &TaskContext) -> io::Result<String> {
                    todo!()
                }
            },
            quote! {
                pub(crate) async fn sum(numbers: Vec<i64>) -> Result<i64, BoxError> {
                    todo!()
                }
            },
        ]
    }

    #[test]
    fn generated_code_uses_only_private_paths() {
        // Every option, including the default queue (no `queue = …`).
        assert_only_private(quote!("email:new"), &handlers(), "asyncjobs");
        assert_only_private(
            quote!("email:new", queue = "EMAIL", max_tries = 5, deadline = "1h"),
            &handlers(),
            "asyncjobs",
        );
        // The catch-all generates no `enqueue`/`task`.
        assert_only_private(quote!(""), &handlers(), "asyncjobs");
    }

    #[test]
    fn generated_code_uses_only_private_paths_under_a_custom_crate_path() {
        assert_only_private(
            quote!("email:new", crate = "my_reexport::aj"),
            &handlers(),
            "aj",
        );
        assert_only_private(quote!("", crate = "my_reexport::aj"), &handlers(), "aj");
    }
}
