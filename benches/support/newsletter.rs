//! The newsletter the rewrite and API benchmarks both rewrite.

/// Article blocks in the newsletter, three links each.
const ARTICLES: usize = 50;

/// A MailChimp template with [`ARTICLES`] article blocks before `</body>`: about 100 KB with
/// 150 links, a large newsletter.
pub(crate) fn newsletter() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/corpus/emails/mailchimp/simple-basic.html"
    );
    let template = std::fs::read_to_string(path).unwrap();
    let body_end = template.rfind("</body>").unwrap();
    let mut html = template[..body_end].to_owned();
    for i in 0..ARTICLES {
        html.push_str(&article(i));
    }
    html.push_str(&template[body_end..]);
    html.into_bytes()
}

/// One article block: a heading link, an image link and a "read more" button.
fn article(i: usize) -> String {
    let utm = format!(
        "utm_source=newsletter&amp;utm_medium=email&amp;utm_campaign=spring&amp;utm_content=a{i}"
    );
    format!(
        r#"
<table border="0" cellpadding="0" cellspacing="0" width="600" class="article" style="border-collapse:collapse;">
  <tr>
    <td valign="top" style="padding:18px 18px 9px;font-family:Helvetica,Arial,sans-serif;font-size:14px;line-height:150%;color:#505050;">
      <h2 style="margin:0;font-size:22px;"><a href="https://news.example.com/2024/04/article-{i}?{utm}" target="_blank" style="color:#202020;text-decoration:none;">Article {i}: what changed this spring, and why it matters to you</a></h2>
      <a href="https://news.example.com/2024/04/article-{i}?{utm}&amp;utm_term=image" target="_blank"><img src="https://cdn.example.com/images/article-{i}.jpg" width="564" alt="Article {i}" style="max-width:564px;display:inline !important;border:0;height:auto;"></a>
      <p style="margin:10px 0;padding:0;">Lorem ipsum dolor sit amet, consectetur adipiscing elit &mdash; sed do eiusmod tempor. Caf&eacute; cr&egrave;me, na&iuml;ve fa&ccedil;ade: ünïcödé.</p>
      <table border="0" cellpadding="0" cellspacing="0" style="border-collapse:separate !important;border-radius:3px;background-color:#2BAADF;">
        <tr><td align="center" valign="middle" style="font-family:Arial;font-size:16px;padding:15px;">
          <a class="button" href="https://news.example.com/2024/04/article-{i}?{utm}&amp;utm_term=button" target="_blank" style="font-weight:bold;letter-spacing:normal;line-height:100%;text-align:center;text-decoration:none;color:#FFFFFF;">Read more</a>
        </td></tr>
      </table>
    </td>
  </tr>
</table>
"#
    )
}
