//! The bound checks, as axum-macros' `debug_handler` builds them: one hidden
//! function per requirement, spanned at the user's tokens, so an
//! unsatisfied bound is reported on that argument or type (and only there:
//! the handler falls back silently when a bound does not hold).

use super::Gen;
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::Type;

/// Every bound check, in one anonymous `const` beside the function.
pub(super) fn bound_checks(g: &Gen) -> TokenStream {
    let payload_check = payload_check(g);
    let return_check = return_check(g);
    let output_check = output_check(g);
    let error_check = error_check(g);
    let state_checks = state_checks(g);
    let send_check = send_check(g);
    quote! {
        #[allow(non_snake_case, dead_code, clippy::all)]
        const _: () = {
            #payload_check
            #return_check
            #output_check
            #error_check
            #(#state_checks)*
            #send_check
        };
    }
}

/// `fn __asyncjobs_check_<name>() where <predicate> {}`, at `span`.
fn where_check(name: &str, span: Span, predicate: TokenStream) -> TokenStream {
    let name = format_ident!("__asyncjobs_check_{}", name, span = span);
    quote_spanned! {span=>
        fn #name() where #predicate {}
    }
}

/// The payload decodes: a call, not a `where` clause. A higher-ranked
/// `where` bound would not be checked here, and `DeserializeOwned` would
/// hide serde's hint to derive `Deserialize`.
fn payload_check(g: &Gen) -> TokenStream {
    let payload_ty = &g.handler.payload;
    let span = payload_ty.span();
    let p = g.private_at(span);
    quote_spanned! {span=>
        fn __asyncjobs_check_payload() {
            #p::assert_payload::<#payload_ty>();
        }
    }
}

/// The return type is a handler's result. With `E` written out,
/// `Result<T, E>` is checked for being a result and `E` on its own
/// ([`error_check`]); otherwise one check covers the result and its error.
fn return_check(g: &Gen) -> TokenStream {
    let ret_ty = &g.handler.ret.ty;
    let span = ret_ty.span();
    let p = g.private_at(span);
    let bound = if g.handler.ret.error.is_some() {
        quote_spanned!(span=> #p::HandlerReturn)
    } else {
        quote_spanned!(span=> #p::HandlerReturnWithError)
    };
    where_check("return", span, quote_spanned!(span=> #ret_ty: #bound))
}

/// The result type `T` is `Serialize`, at `T` when written out, otherwise
/// at the whole return type.
fn output_check(g: &Gen) -> TokenStream {
    let ret_ty = &g.handler.ret.ty;
    match &g.handler.ret.output {
        Some(t) => {
            let span = t.span();
            let p = g.private_at(span);
            where_check(
                "output",
                span,
                quote_spanned!(span=> #t: #p::serde::Serialize),
            )
        }
        None => {
            let span = ret_ty.span();
            let p = g.private_at(span);
            where_check(
                "output",
                span,
                quote_spanned!(span=> <#ret_ty as #p::HandlerReturn>::Output: #p::serde::Serialize),
            )
        }
    }
}

/// The error type `E`, when written out, converts into `HandlerError`.
fn error_check(g: &Gen) -> TokenStream {
    match &g.handler.ret.error {
        Some(e) => {
            let span = e.span();
            let p = g.private_at(span);
            where_check(
                "error",
                span,
                quote_spanned!(span=> #e: ::core::convert::Into<#p::HandlerError>),
            )
        }
        None => quote!(),
    }
}

/// Each `State<T>` argument is a usable state, checked at `State` itself (a
/// type's own span is its first token's).
fn state_checks(g: &Gen) -> Vec<TokenStream> {
    g.handler
        .states
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let ty = &s.ty;
            let span = match ty {
                Type::Path(p) => p.path.segments.last().map_or(ty.span(), |s| s.ident.span()),
                _ => ty.span(),
            };
            let p = g.private_at(span);
            where_check(
                &format!("state{i}"),
                span,
                quote_spanned!(span=> #ty: #p::StateArg),
            )
        })
        .collect()
}

/// The handler's future is `Send`, to run on the worker's runtime; checked
/// by calling the function with placeholder arguments, at its name.
fn send_check(g: &Gen) -> TokenStream {
    let fn_name = g.fn_name;
    let placeholders = g.handler.args.iter().map(|_| quote!(loop {}));
    quote_spanned! {fn_name.span()=>
        #[allow(unreachable_code, clippy::diverging_sub_expression)]
        fn __asyncjobs_check_send() {
            fn __asyncjobs_assert_send<T: ::core::marker::Send>(_: T) {}
            __asyncjobs_assert_send(#fn_name(#(#placeholders),*));
        }
    }
}
