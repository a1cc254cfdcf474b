//! `#[task_handler]`: parses the attribute and the function, checks the
//! signature ([`crate::check`]) and generates the handler's items
//! ([`crate::generate`]).

use crate::attr::Args;
use crate::check::check_signature;
use crate::errors::Errors;
use crate::generate::generate;
use proc_macro2::TokenStream;
use quote::quote;
use syn::ItemFn;

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
