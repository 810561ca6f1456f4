extension Substring {
    /// Without leading and trailing spaces and tabs, and also line ends
    /// ("\n", "\r", "\r\n") when `lineEnds`.
    func trimmingBlanks(lineEnds: Bool = false) -> Substring {
        func isBlank(_ c: Character) -> Bool {
            c == " " || c == "\t" || (lineEnds && (c == "\n" || c == "\r" || c == "\r\n"))
        }
        var s = self
        while let f = s.first, isBlank(f) { s.removeFirst() }
        while let l = s.last, isBlank(l) { s.removeLast() }
        return s
    }
}
