package directory

import (
	"strings"
	"unicode"

	"polder.dev/polder/internal/store"
)

// parseQuery reads a search term in the web-search style that Synapse and
// PostgreSQL's websearch_to_tsquery accept:
//   - words are matched as prefixes ("mart" finds "martians"), all of them
//     ("martians men" needs both);
//   - "quoted words" must appear together, in that order, and whole;
//   - a leading - excludes ("-venus");
//   - OR between terms accepts either side.
//
// Words are runs of letters and digits, lower-cased; a token such as
// "e-mail" is the phrase "e mail". It also returns the words to highlight:
// those of the terms that are not excluded.
func parseQuery(s string) ([][]store.SearchTerm, []string) {
	var (
		ors        [][]store.SearchTerm
		cur        []store.SearchTerm
		highlights []string
	)
	add := func(words []string, prefix, negated bool) {
		if len(words) == 0 {
			return
		}
		cur = append(cur, store.SearchTerm{Words: words, Prefix: prefix, Negated: negated})
		if !negated {
			for _, w := range words {
				if !contains(highlights, w) {
					highlights = append(highlights, w)
				}
			}
		}
	}
	rs := []rune(s)
	for i := 0; i < len(rs); {
		r := rs[i]
		if unicode.IsSpace(r) {
			i++
			continue
		}
		negated := false
		if r == '-' && i+1 < len(rs) && !unicode.IsSpace(rs[i+1]) {
			negated = true
			i++
		}
		if i < len(rs) && rs[i] == '"' {
			// A phrase, up to the closing quote (or the end).
			j := i + 1
			for j < len(rs) && rs[j] != '"' {
				j++
			}
			add(searchWords(string(rs[i+1:j])), false, negated)
			i = j + 1
			continue
		}
		j := i
		for j < len(rs) && !unicode.IsSpace(rs[j]) && rs[j] != '"' {
			j++
		}
		tok := string(rs[i:j])
		i = j
		if !negated && strings.EqualFold(tok, "or") {
			if len(cur) > 0 {
				ors = append(ors, cur)
				cur = nil
			}
			continue
		}
		add(searchWords(tok), true, negated)
	}
	if len(cur) > 0 {
		ors = append(ors, cur)
	}
	return ors, highlights
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func isWordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }
