//! The code `#[task_handler]` generates for a checked function, one
//! function per generated item, composed by [`generate`].
//!
//! The output is in two places:
//!
//! * beside the function, in its scope (where its types resolve as
//!   written): an adapter `__asyncjobs_<fn>_run` ([`adapter_fn`]), an
//!   `impl HandlerSite for <fn>::__Key` giving the payload and result types
//!   and building the handler ([`handler_site_impl`]), the module-level
//!   site ([`level`]) and the bound checks ([`bounds`]);
//! * the module `<fn>` ([`module`]), which reaches those types only through
//!   `<__Key as HandlerSite>` (never `super::`), so it compiles wherever the
//!   function is declared.
//!
//! Nothing generated is more visible than the function: the helpers beside
//! it are private, the module has the function's visibility and its items
//! the same visibility written one level deeper ([`inner_vis`]); see
//! docs/processing.md §6.5.
//!
//! Generated code reaches the runtime only through `<crate>::__private`.

mod bounds;
mod level;
mod module;

use crate::attr::Args;
use crate::check::{Arg, Ctx, Handler};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Ident, ItemFn, Type};

/// What every generated item is made from: the attribute, the function, the
/// checked signature and the names derived from them.
struct Gen<'a> {
    args: &'a Args,
    func: &'a ItemFn,
    handler: &'a Handler,
    /// `<crate>::__private`: the crate path itself is not kept around.
    private: TokenStream,
    /// The function's name, as written (`r#` kept).
    fn_name: &'a Ident,
    /// `__asyncjobs_<fn>_run`
    run_fn: Ident,
    /// `__state0`, `__state1`, …: one variable per `State<T>` argument.
    state_vars: Vec<Ident>,
    /// The task type (`""` is the catch-all).
    task_type: String,
    /// The `queue = "…"` option, when given.
    queue: Option<String>,
    /// The function's visibility as seen from inside the module `<fn>`
    /// ([`inner_vis`]): every item of that module gets it.
    item_vis: TokenStream,
}

impl<'a> Gen<'a> {
    fn new(args: &'a Args, func: &'a ItemFn, handler: &'a Handler) -> Gen<'a> {
        let krate = args
            .krate
            .as_ref()
            .map(|p| p.to_token_stream())
            .unwrap_or_else(|| quote!(::asyncjobs));
        let fn_name = &func.sig.ident;
        Gen {
            args,
            func,
            handler,
            private: quote!(#krate::__private),
            fn_name,
            run_fn: format_ident!("__asyncjobs_{}_run", fn_name.unraw()),
            state_vars: (0..handler.states.len())
                .map(|i| format_ident!("__state{}", i))
                .collect(),
            task_type: args
                .task_type
                .as_ref()
                .map(|t| t.value())
                .unwrap_or_default(),
            queue: args.queue.as_ref().map(|q| q.value()),
            item_vis: inner_vis(&func.vis),
        }
    }

    /// `<crate>::__private` with every span set to `span`: every token of a
    /// bound must carry the user's span, or the error is reported at the
    /// attribute instead.
    fn private_at(&self, span: Span) -> TokenStream {
        respan(self.private.clone(), span)
    }

    /// The `State<T>` argument types, as written.
    fn state_tys(&self) -> Vec<&Type> {
        self.handler.states.iter().map(|s| &s.ty).collect()
    }

    /// The catch-all handler `""` gets no `task`, `enqueue`, … .
    fn catch_all(&self) -> bool {
        self.task_type.is_empty()
    }
}

/// The whole expansion: the function unchanged, then every generated item.
pub(crate) fn generate(args: &Args, func: &ItemFn, handler: &Handler) -> TokenStream {
    let g = Gen::new(args, func, handler);
    let run = adapter_fn(&g);
    let site = handler_site_impl(&g);
    let level_site = level::module_level_site(&g);
    let checks = bounds::bound_checks(&g);
    let module = module::handler_module(&g);
    quote! {
        #func

        #run

        #site

        #level_site

        #checks

        #module
    }
}

/// An adapter with the context by value and the states in a tuple, in the
/// user's scope (so the types resolve as written). Being a separate fn, its
/// future's `Send` is known when the handler is selected in
/// [`handler_site_impl`].
fn adapter_fn(g: &Gen) -> TokenStream {
    let (private, fn_name, run_fn) = (&g.private, g.fn_name, &g.run_fn);
    let state_vars = &g.state_vars;
    let state_tys = g.state_tys();
    let payload_ty = &g.handler.payload;
    let ret_ty = &g.handler.ret.ty;
    let call_args = g.handler.args.iter().map(|a| match a {
        Arg::Ctx(Ctx::Owned) => quote!(__ctx),
        Arg::Ctx(Ctx::Borrowed) => quote!(&__ctx),
        Arg::State(i) => {
            let v = &state_vars[*i];
            quote!(#v)
        }
        Arg::Payload => quote!(__payload),
    });
    quote! {
        #[doc(hidden)]
        #[allow(non_snake_case)]
        async fn #run_fn(
            __ctx: #private::TaskContext,
            (#(#state_vars,)*): (#(#state_tys,)*),
            __payload: #payload_ty,
        ) -> #ret_ty {
            #fn_name(#(#call_args),*).await
        }
    }
}

/// `impl HandlerSite for <fn>::__Key`: the payload and result types, the
/// declared states, and `make`, which builds the handler.
///
/// Each state is looked up once, in `make`, when the handler is built (at
/// worker start-up); the closure hands every task a clone. Autoref
/// specialization picks `TakeStateChecked` when the argument is a usable
/// `State<T>`, and `Typed` when every bound holds; otherwise the
/// `Unchecked` fallbacks are picked (so no second error is reported here),
/// whose use would fail the build after type checking, which the bound
/// checks have already failed.
fn handler_site_impl(g: &Gen) -> TokenStream {
    let Gen {
        private,
        fn_name,
        run_fn,
        state_vars,
        ..
    } = g;
    let payload_ty = &g.handler.payload;
    let ret_ty = &g.handler.ret.ty;
    let output_ty = match &g.handler.ret.output {
        Some(t) => t.to_token_stream(),
        None => quote!(<#ret_ty as #private::HandlerReturn>::Output),
    };
    let state_tys = g.state_tys();
    let state_names: Vec<String> = g
        .handler
        .states
        .iter()
        .map(|s| type_name(&s.inner))
        .collect();
    let state_inner: Vec<&Type> = g.handler.states.iter().map(|s| &s.inner).collect();
    // The impl is as visible as `__Key`, that is as the function: a payload
    // or result type less visible than that is refused here (E0446,
    // docs/processing.md §6.5), reported at the type rather than at the
    // attribute.
    let payload_assoc = quote_spanned!(payload_ty.span()=> type Payload = #payload_ty;);
    let output_span = match &g.handler.ret.output {
        Some(t) => t.span(),
        None => ret_ty.span(),
    };
    let output_assoc = quote_spanned!(output_span=> type Output = #output_ty;);
    quote! {
        impl #private::HandlerSite for #fn_name::__Key {
            #payload_assoc
            #output_assoc
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
    }
}

/// The function's visibility written from inside the module `<fn>`, one
/// level deeper: an item of that module with it is visible exactly where
/// the function is (docs/processing.md §6.5).
///
/// | function | items of `<fn>` |
/// | --- | --- |
/// | (private), `pub(self)`, `pub(in self)` | `pub(super)` |
/// | `pub(super)`, `pub(in super…)` | `pub(in super::super…)` |
/// | `pub`, `pub(crate)`, `pub(in crate…)` | the same |
pub(crate) fn inner_vis(vis: &syn::Visibility) -> TokenStream {
    use syn::Visibility;
    let restricted = match vis {
        Visibility::Public(_) => return vis.to_token_stream(),
        Visibility::Inherited => return quote!(pub(super)),
        Visibility::Restricted(r) => r,
    };
    let pub_token = &restricted.pub_token;
    let path = &restricted.path;
    let first = path.segments.first().map(|s| s.ident.to_string());
    let deeper = match first.as_deref() {
        // `self` is the function's module: the parent of `<fn>`
        Some("self") if path.leading_colon.is_none() => {
            let mut segments = path.segments.iter();
            let self_seg = segments.next().expect("a first segment");
            let sup = Ident::new("super", self_seg.ident.span());
            let rest: Vec<_> = segments.collect();
            quote!(#sup #(:: #rest)*)
        }
        // one more `super` for the extra level
        Some("super") if path.leading_colon.is_none() => {
            let sup = Ident::new("super", path.segments[0].ident.span());
            quote!(#sup :: #path)
        }
        // `crate` and absolute paths mean the same from any module
        _ => return vis.to_token_stream(),
    };
    quote!(#pub_token(in #deeper))
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

#[cfg(test)]
mod tests {
    use super::inner_vis;

    #[test]
    fn module_items_are_visible_where_the_function_is() {
        for (fn_vis, items) in [
            ("", "pub (super)"),
            ("pub(self)", "pub (in super)"),
            ("pub(in self)", "pub (in super)"),
            ("pub(super)", "pub (in super :: super)"),
            ("pub(in super::super)", "pub (in super :: super :: super)"),
            ("pub(crate)", "pub (crate)"),
            ("pub(in crate::jobs)", "pub (in crate :: jobs)"),
            ("pub", "pub"),
        ] {
            let vis: syn::Visibility = syn::parse_str(fn_vis).unwrap();
            assert_eq!(inner_vis(&vis).to_string(), items, "for `{fn_vis}`");
        }
    }
}
